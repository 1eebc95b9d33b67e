"""Noise schedules (DDPM family) and time distributions/shifts (flow matching).

All DDPM tables are computed in float64 and stored once by the objective; they are closed
forms, so the tests compare them with the papers' formulas (and with MONAI's schedulers,
whose beta definitions we match) instead of with snapshots.

Conventions
-----------
* DDPM: ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` for integer t in
  [0, T-1] (arXiv:2006.11239). alpha_bar strictly decreases in t and lies in (0, 1), except
  that :func:`rescale_zero_terminal_snr` makes alpha_bar[T-1] exactly 0 (pure noise).
* Flow matching: ``x_t = (1 - t) x0 + t eps`` with t in [0, 1]: t = 1 is pure noise,
  t = 0 is data (the SD3 convention, arXiv:2403.03206; MONAI's RFlowScheduler/MAISI-v2 use
  the same direction with timesteps scaled by 1000).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "ScheduleName",
    "linear_betas",
    "scaled_linear_betas",
    "cosine_betas",
    "make_betas",
    "alphas_cumprod_from_betas",
    "rescale_zero_terminal_snr",
    "DEFAULT_BETAS",
    "logit_normal",
    "resolution_shift",
    "shift_time",
]

ScheduleName = Literal["linear", "cosine", "scaled_linear"]

# Paper defaults for (beta_start, beta_end): DDPM (arXiv:2006.11239 sec. 4) and Stable
# Diffusion / LDM (arXiv:2112.10752, its released config) for scaled_linear.
DEFAULT_BETAS: dict[str, tuple[float, float]] = {
    "linear": (1e-4, 0.02),
    "scaled_linear": (0.00085, 0.012),
}


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Betas linear in t from beta_start to beta_end (DDPM, arXiv:2006.11239). (T,) float64."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def scaled_linear_betas(num_steps: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """Betas whose square roots are linear in t (LDM/Stable Diffusion). (T,) float64."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (improved DDPM, arXiv:2102.09672 eq. 17). (T,) float64.

    alpha_bar(t) = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2; betas are clipped at
    ``max_beta`` because near t = T the ratio f(t+1)/f(t) tends to 0 (the paper's 0.999).
    """
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Shift and scale sqrt(alpha_bar) so that it ends at exactly 0 (Lin et al. 2023,
    arXiv:2305.08891 alg. 1). (T,) float64, the last beta is 1.

    Every schedule in common use leaves signal at t = T-1 (sqrt(alpha_bar[T-1]) = 0.0064 linear,
    0.068 scaled_linear), yet sampling starts from pure noise: the model never saw that input
    and the data mean leaks into samples by that factor. The rescale keeps sqrt(alpha_bar[0])
    and maps sqrt(alpha_bar[T-1]) to 0 linearly in between, so the last training step IS pure
    noise. An epsilon-predicting net cannot give x0 there (x0 = (x_t - b eps) / a with a = 0):
    the paper pairs it with v prediction, and ObjectiveConfig refuses epsilon with it.
    """
    sqrt_ab = alphas_cumprod_from_betas(betas.double()).sqrt()  # (T,)
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    if not first > last:
        raise ValueError("zero-terminal-SNR rescaling needs alpha_bar to decrease from t = 0 to t = T-1")
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))  # sqrt_ab[0] kept, sqrt_ab[-1] = 0
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def make_betas(
    schedule: ScheduleName,
    num_steps: int,
    beta_start: float | None = None,
    beta_end: float | None = None,
    *,
    zero_terminal_snr: bool = False,
) -> Tensor:
    """Betas of a named schedule; ``None`` betas take the paper defaults in ``DEFAULT_BETAS``.

    ``zero_terminal_snr`` rescales them with :func:`rescale_zero_terminal_snr`.
    """
    if num_steps < 1:
        raise ValueError(f"num_train_steps must be >= 1, got {num_steps}")
    if zero_terminal_snr:
        if num_steps < 2:
            raise ValueError("zero_terminal_snr needs num_train_steps >= 2 (step 0 keeps its signal)")
        return rescale_zero_terminal_snr(make_betas(schedule, num_steps, beta_start, beta_end))
    if schedule == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("the cosine schedule has no beta_start/beta_end: remove them or use schedule 'linear'")
        return cosine_betas(num_steps)
    if schedule not in DEFAULT_BETAS:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of linear, cosine, scaled_linear")
    lo, hi = DEFAULT_BETAS[schedule]
    lo = lo if beta_start is None else beta_start
    hi = hi if beta_end is None else beta_end
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={lo}, beta_end={hi}")
    fn = linear_betas if schedule == "linear" else scaled_linear_betas
    return fn(num_steps, lo, hi)


def alphas_cumprod_from_betas(betas: Tensor) -> Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s). (T,) in the dtype of ``betas``."""
    return torch.cumprod(1.0 - betas, dim=0)


# --------------------------------------------------------------------------------------------
# Flow matching time
# --------------------------------------------------------------------------------------------


def logit_normal(
    n: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """t = sigmoid(mean + std * z), z ~ N(0, 1): puts more training weight on middle times,
    the best-performing choice for rectified flow in SD3 (arXiv:2403.03206 sec. 3.1). (n,) in (0, 1).
    """
    z = torch.randn(n, generator=generator, device=generator.device if generator is not None else device)
    return torch.sigmoid(mean + std * z).to(device=device if device is not None else z.device)


def resolution_shift(num_voxels: int, base_voxels: int = 32**3, power: float = 0.5) -> float:
    """Shift factor ``s = (num_voxels / base_voxels) ** power`` for resolution-dependent time shift.

    SD3 (arXiv:2403.03206 sec. 5.3.2) argues that a constant image seen through n noisy pixels
    has effective noise sigma / sqrt(n), so matching the signal-to-noise of a base resolution
    needs ``s = sqrt(n / n_base)`` (power 0.5, any number of spatial dims). MONAI's
    RFlowScheduler (used by MAISI-v2) instead uses the per-axis size ratio,
    ``(n / n_base) ** (1 / spatial_dims)``: power = 1/3 for volumes reproduces it.
    ``s == 1`` at the base resolution (identity shift).
    """
    if num_voxels <= 0 or base_voxels <= 0:
        raise ValueError(f"voxel counts must be positive, got num_voxels={num_voxels}, base_voxels={base_voxels}")
    return (num_voxels / base_voxels) ** power


def shift_time(t: Tensor, shift: float) -> Tensor:
    """``t' = s t / (1 + (s - 1) t)`` (arXiv:2403.03206 eq. 23).

    Monotone increasing on [0, 1], fixes 0 and 1, identity for s = 1; s > 1 moves time towards
    noise (t = 1), which larger volumes need because their signal survives more noise.
    """
    if shift <= 0:
        raise ValueError(f"time shift must be positive, got {shift}")
    # Clamped: in floating point the formula can give 1 + 2e-16 at t = 1 (s < 1), which the flow
    # samplers rightly refuse as a time outside [0, 1].
    return (shift * t / (1 + (shift - 1) * t)).clamp(0.0, 1.0)
