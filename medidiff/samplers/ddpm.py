"""DDPM-family samplers: ancestral DDPM (arXiv:2006.11239) and DDIM (arXiv:2010.02502).

Pure functions of ``(denoiser, x, ts)``: the grid ``ts`` holds alpha_bar values, increasing,
one more than the number of steps, normally ending at 1 (clean data); it comes from
``DDPMObjective.timesteps``. Step i moves x from alpha_bar ``ts[i]`` to ``ts[i+1]`` with one
denoiser evaluation. Transition coefficients are derived from the two alpha_bar values alone,
which is exactly IDDPM respacing (arXiv:2102.09672 sec. 4): beta_i = 1 - ts[i] / ts[i+1].

The denoiser returns x0; eps is recovered as (x - sqrt(ab) x0) / sqrt(1 - ab), so clamping or
transforming x0 (``clip_x0``, ``x0_transform``) changes the implied eps consistently. ``clip_x0``
clamps in the model's own space (latent coefficients for a latent model: see ``wrap_denoiser``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from medidiff.samplers.guidance import Guidance, wrap_denoiser
from medidiff.utils.tensor import Cond, Denoiser, randn_per_sample, batch_time

__all__ = ["sample_ddpm", "sample_ddim", "Callback"]

Callback = Callable[[int, Tensor, Tensor], None]
"""``callback(step, x, x0_hat)``: called after step ``step`` with the new x and that step's x0."""


def _grid(ts: Tensor | Sequence[float]) -> list[float]:
    ts = [float(v) for v in torch.as_tensor(ts, dtype=torch.float64).flatten()]
    if len(ts) < 2:
        raise ValueError("the alpha_bar grid needs at least 2 values (num_steps + 1)")
    # alpha_bar = 0 (pure noise) can only be where sampling starts (zero terminal SNR schedules)
    if any(not 0.0 <= v <= 1.0 for v in ts) or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(
            "DDPM samplers take a grid of alpha_bar values strictly increasing in [0, 1] "
            "(from DDPMObjective.timesteps); got a grid that is not: is it a flow-time grid?"
        )
    return ts


def _combine(a: Tensor, ca: float, b: Tensor, cb: float, noise_std: float,
             generators: Sequence[torch.Generator] | None) -> Tensor:
    """``ca a + cb b + noise_std eps``: three elementwise passes, like an Euler step, with eps
    (B, ...) drawn per sample on the state's device (``randn_per_sample``: no host round trip).

    The result has the promoted dtype of ``a`` and ``b``, so a bf16 x0 from an autocast net joins
    the float32 state without rounding it to bf16.
    """
    out = torch.add(a * ca, b, alpha=cb)
    if noise_std > 0:
        out.add_(randn_per_sample(out.shape, generators, device=out.device, dtype=out.dtype), alpha=noise_std)
    return out


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    ts: Tensor | Sequence[float],
    *,
    cond: Cond | None = None,
    guidance: Guidance | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
    generators: Sequence[torch.Generator] | None = None,
    clip_x0: bool = False,
    x0_transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """DDIM (arXiv:2010.02502 eq. 12): deterministic for ``eta = 0``; ``eta = 1`` has the DDPM
    posterior variance. Per-step noise for sample i comes from ``generators[i]``.
    x: (B, C, *spatial) at alpha_bar ``ts[0]`` (unit Gaussian noise for a full run).
    """
    grid = _grid(ts)
    den = wrap_denoiser(denoiser, guidance=guidance, clip_x0=clip_x0, x0_transform=x0_transform)
    cond = cond or {}
    for i, (ab, ab_next) in enumerate(zip(grid, grid[1:])):
        x0 = den(x, batch_time(ab, x), cond)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        # sigma_i of eq. 16; 1 - ab / ab_next is the respaced beta.
        sigma = eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
        x = _combine(x0, math.sqrt(ab_next), eps, math.sqrt(max(1 - ab_next - sigma**2, 0.0)), sigma, generators)
        if callback is not None:
            callback(i, x, x0)
    return x


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    ts: Tensor | Sequence[float],
    *,
    cond: Cond | None = None,
    guidance: Guidance | None = None,
    callback: Callback | None = None,
    generators: Sequence[torch.Generator] | None = None,
    clip_x0: bool = False,
    x0_transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Ancestral sampling from the posterior q(x_next | x, x0_hat) (arXiv:2006.11239 eq. 6-7).

    Uses the posterior variance beta_tilde = beta (1 - ab_next) / (1 - ab), the choice that is
    exact when x0_hat is exact. One denoiser call per step; no noise on a step ending at 1.
    """
    grid = _grid(ts)
    den = wrap_denoiser(denoiser, guidance=guidance, clip_x0=clip_x0, x0_transform=x0_transform)
    cond = cond or {}
    for i, (ab, ab_next) in enumerate(zip(grid, grid[1:])):
        x0 = den(x, batch_time(ab, x), cond)
        alpha = ab / ab_next
        beta = 1 - alpha
        c_x0 = math.sqrt(ab_next) * beta / (1 - ab)
        c_x = math.sqrt(alpha) * (1 - ab_next) / (1 - ab)
        var = beta * (1 - ab_next) / (1 - ab)
        x = _combine(x, c_x, x0, c_x0, math.sqrt(var), generators)
        if callback is not None:
            callback(i, x, x0)
    return x
