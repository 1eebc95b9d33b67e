"""Flow-matching ODE samplers: Euler and Heun (EDM's 2nd-order scheme, arXiv:2206.00364 alg. 1).

Pure functions of ``(denoiser, x, ts)``: ``ts`` holds flow times, strictly decreasing in
[0, 1], normally from 1 (noise) to 0 (data), from ``FlowMatchingObjective.timesteps``. On the
path x_t = (1 - t) x0 + t eps the velocity implied by the x0 prediction is
``v = (x - x0_hat) / t``, so an Euler step is ``x_next = x0_hat + (t_next / t) (x - x0_hat)``
(the flow analogue of DDIM with eta = 0). ``sample_euler``'s ``eta`` adds DDIM's stochasticity
(arXiv:2010.02502 eq. 12) on the flow's Gaussian path, alpha_t = 1 - t, sigma_t = t: eta = 1 draws
each step from the path's own posterior q(x_s | x_t, x0 = x0_hat), as ancestral DDPM does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from medidiff.samplers.ddpm import Callback, _combine
from medidiff.samplers.guidance import Guidance, wrap_denoiser
from medidiff.utils.tensor import Cond, Denoiser, batch_time

__all__ = ["sample_euler", "sample_heun", "with_tail"]

# Each tail step's time over the one before it (SamplerConfig.tail_steps).
TAIL_RATIO = 0.25


def _grid(ts: Tensor | Sequence[float]) -> list[float]:
    ts = [float(v) for v in torch.as_tensor(ts, dtype=torch.float64).flatten()]
    if len(ts) < 2:
        raise ValueError("the flow-time grid needs at least 2 values (num_steps + 1)")
    if any(not 0.0 <= v <= 1.0 for v in ts) or any(b >= a for a, b in zip(ts, ts[1:])):
        raise ValueError(
            "flow samplers take flow times strictly decreasing in [0, 1] (from "
            "FlowMatchingObjective.timesteps); got a grid that is not: is it an alpha_bar grid?"
        )
    return ts


def with_tail(ts: Tensor | Sequence[float], steps: int) -> Tensor:
    """A flow grid ``(..., t_last, 0)`` with ``steps`` more times between t_last and 0, each TAIL_RATIO of the
    one before (``SamplerConfig.tail_steps``): the last step's x0 estimate then comes from t_last * 0.25**steps.
    The grid before t_last is unchanged, so every sample's path is too up to there."""
    grid = torch.as_tensor(_grid(ts), dtype=torch.float64)
    if steps < 0:
        raise ValueError(f"tail steps must be >= 0, got {steps}")
    if grid[-1] != 0.0:
        raise ValueError(f"a tail refines the step to t = 0; this grid ends at {float(grid[-1]):g}")
    if not steps:
        return grid
    tail = grid[-2] * TAIL_RATIO ** torch.arange(1, steps + 1, dtype=torch.float64)
    return torch.cat([grid[:-1], tail, grid[-1:]])


@torch.no_grad()
def sample_euler(
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
    eta: float = 0.0,
) -> Tensor:
    """Euler integration of the probability-flow ODE (``eta = 0``); one denoiser call per step.

    ``eta`` in (0, 1] makes each step partly stochastic, DDIM's way: x_s = (1 - s) x0_hat +
    sqrt(s^2 - sigma^2) eps_hat + sigma z, with sigma = eta times the std of the path's posterior
    q(x_s | x_t, x0) and eps_hat = (x_t - (1 - t) x0_hat) / t; fresh noise z replaces part of the
    noise the state carries, which lets later steps correct earlier x0 errors. Sample i's noise
    comes from ``generators[i]`` (else the global RNG). x: (B, C, *spatial) at time ``ts[0]``.
    """
    grid = _grid(ts)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    den = wrap_denoiser(denoiser, guidance=guidance, clip_x0=clip_x0, x0_transform=x0_transform)
    cond = cond or {}
    for i, (t, t_next) in enumerate(zip(grid, grid[1:])):
        x0 = den(x, batch_time(t, x), cond)
        if eta == 0.0:
            x = x0 + (t_next / t) * (x - x0)
        else:
            eps = (x - (1 - t) * x0) / t
            sigma = eta * _posterior_std(t, t_next)
            x = _combine(x0, 1 - t_next, eps, math.sqrt(max(t_next**2 - sigma**2, 0.0)), sigma, generators)
        if callback is not None:
            callback(i, x, x0)
    return x


def _posterior_std(t: float, s: float) -> float:
    """Std of q(x_s | x_t, x0) on the path x_t = (1 - t) x0 + t eps, for s < t: the transition
    x_t = a x_s + sigma_ts eps' has a = (1 - t) / (1 - s) and sigma_ts^2 = t^2 - a^2 s^2, so the
    posterior variance is sigma_ts^2 s^2 / t^2 (DDPM's beta_tilde); 0 at s = 0."""
    a = (1 - t) / (1 - s)
    return s * math.sqrt(max(t * t - a * a * s * s, 0.0)) / t


@torch.no_grad()
def sample_heun(
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
    """Heun's method (trapezoidal correction of an Euler predictor, EDM alg. 1).

    A step ending at t = 0 is plain Euler (the velocity is undefined there), so a full run of
    N steps makes 2N - 1 denoiser calls.
    """
    grid = _grid(ts)
    den = wrap_denoiser(denoiser, guidance=guidance, clip_x0=clip_x0, x0_transform=x0_transform)
    cond = cond or {}
    for i, (t, t_next) in enumerate(zip(grid, grid[1:])):
        x0 = den(x, batch_time(t, x), cond)
        d = (x - x0) / t  # velocity at t
        x_euler = x + (t_next - t) * d
        if t_next > 0:
            x0_next = den(x_euler, batch_time(t_next, x), cond)
            d_next = (x_euler - x0_next) / t_next
            x = x + (t_next - t) * 0.5 * (d + d_next)
        else:
            x = x_euler
        if callback is not None:
            callback(i, x, x0)
    return x
