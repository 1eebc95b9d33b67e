"""DDPM objective (arXiv:2006.11239) with epsilon, v (arXiv:2202.00512) or x0 prediction.

Forward process ``x_t = a x0 + b eps`` with ``a = sqrt(alpha_bar_t)``, ``b = sqrt(1 - alpha_bar_t)``
over integer steps t in [0, T-1]. The network sees t (as float); the sampler never does:
:meth:`DDPMObjective.denoiser` adapts any parameterisation to the one interface
``denoiser(x_t, alpha_bar, cond) -> x0_hat`` (DESIGN style 4), so DDPM-family samplers work on
an explicit alpha_bar grid (:meth:`DDPMObjective.timesteps`) and never branch on the
parameterisation. A continuous alpha_bar is mapped back to network time by interpolating
log(alpha_bar) between the integer steps, exact at the steps themselves.

Why not MONAI's schedulers: ``DDPMScheduler``/``DDIMScheduler`` are stateful (``set_timesteps``
mutates the object and ``step`` relies on it), which conflicts with pure samplers, and their
``step`` is written per parameterisation. We use the same beta formulas (the tests check them
against MONAI) and keep sampling in ``medidiff.samplers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medidiff.objectives.config import ObjectiveConfig
from medidiff.objectives.schedules import alphas_cumprod_from_betas, make_betas
from medidiff.samplers.guidance import cfg_denoiser, dropout_conditions
from medidiff.utils.tensor import Cond, Denoiser, append_dims, spatial_weight_map, rand_on, regression_loss

__all__ = [
    "Prediction",
    "Spacing",
    "EPS_GAIN_LIMIT",
    "convert_prediction",
    "min_snr_weight",
    "eps_error_gain",
    "DDPMObjective",
]

Prediction = Literal["epsilon", "v", "x0"]
Spacing = Literal["trailing", "linspace", "leading"]

# Largest eps_error_gain an epsilon-predicting model may sample with. A net off by e in eps at
# the noisiest step moves x by gain * e noise stds there, which the deterministic samplers carry
# to the end as about gain * e data stds: with e = 1% and gain 20 that is 0.2 stds. The default
# grids of the linear (1.2 at 50 steps) and scaled_linear (1.1) schedules are far below it;
# cosine's trailing grid (632 at 50 steps, 32 even at 1000) is far above: a tiny trained model
# sampled mean [6.6, -3.2] for data with mean [1, -0.5] (issue 21), and the exact denoiser plus
# 1% is off by more than 1 (tests/test_experiment.py).
EPS_GAIN_LIMIT = 20.0


def eps_error_gain(grid: Tensor) -> float:
    """How much the first step of an alpha_bar ``grid`` (from :meth:`DDPMObjective.timesteps`)
    amplifies an epsilon-prediction error, in x.

    With a = sqrt(ab0), b = sqrt(1 - ab0), x0 = (x - b eps) / a, so an eps error e is an x0 error
    e b / a; DDIM (and the DDPM posterior mean, to first order) puts sqrt(ab1) x0 into the next
    x, so e becomes e sqrt(ab1) b / a there. Infinite when ab0 = 0 (zero terminal SNR).
    """
    ab0, ab1 = float(grid[0]), float(grid[1])
    if ab0 <= 0.0:
        return math.inf
    return math.sqrt(ab1 * (1.0 - ab0) / ab0)


def _coeffs(alpha_bar: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """a = sqrt(ab), b = sqrt(1 - ab), computed in float64 and broadcast against ``like``."""
    ab = torch.as_tensor(alpha_bar, device=like.device).double()
    a = append_dims(ab.sqrt(), like.ndim).to(like.dtype)
    b = append_dims((1 - ab).sqrt(), like.ndim).to(like.dtype)
    return a, b


def convert_prediction(pred: Tensor, x_t: Tensor, alpha_bar: Tensor, src: Prediction, dst: Prediction) -> Tensor:
    """Convert a prediction between epsilon, v and x0 given ``x_t`` and (B,) ``alpha_bar``.

    With a = sqrt(ab), b = sqrt(1 - ab) (so a^2 + b^2 = 1) and v = a eps - b x0:
    x0 = (x_t - b eps) / a = a x_t - b v, eps = (x_t - a x0) / b, v = (a x_t - x0) / b.
    Exact inverses of each other (up to rounding); eps -> x0 divides by a, so it amplifies
    errors at high noise, which is one reason to prefer v (arXiv:2202.00512 sec. 4).
    """
    if src == dst:
        return pred
    a, b = _coeffs(alpha_bar, x_t)
    # fused forms (two elementwise passes each): they run at every sampler step (issue 15)
    if src == "epsilon":
        x0 = torch.addcmul(x_t, b, pred, value=-1).div_(a)  # (x_t - b eps) / a
    elif src == "v":
        x0 = torch.addcmul(a * x_t, b, pred, value=-1)  # a x_t - b v
    elif src == "x0":
        x0 = pred
    else:
        raise ValueError(f"unknown prediction {src!r}; choose epsilon, v or x0")
    if dst == "x0":
        return x0
    if dst == "epsilon":
        return (x_t - a * x0) / b
    if dst == "v":
        return (a * x_t - x0) / b
    raise ValueError(f"unknown prediction {dst!r}; choose epsilon, v or x0")


def min_snr_weight(snr: Tensor, gamma: float, prediction: Prediction) -> Tensor:
    """Min-SNR-gamma loss weight (arXiv:2303.09556 sec. 3.4) for each parameterisation.

    The paper weights the x0 loss by min(snr, gamma). An eps loss equals snr * x0 loss and a
    v loss equals (snr + 1) * x0 loss, so the weights become min(snr, gamma) / snr and
    min(snr, gamma) / (snr + 1).
    """
    clipped = snr.clamp(max=gamma)
    if prediction == "x0":
        return clipped
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    raise ValueError(f"unknown prediction {prediction!r}; choose epsilon, v or x0")


class DDPMObjective:
    """Discrete-time DDPM objective; ``kind == "ddpm"`` (samplers ``ddpm`` and ``ddim``)."""

    kind: Literal["ddpm"] = "ddpm"

    def __init__(self, config: ObjectiveConfig | None = None) -> None:
        config = config or ObjectiveConfig(type="ddpm")
        if config.type != "ddpm":
            raise ValueError(f"DDPMObjective needs objective.type 'ddpm', got {config.type!r}")
        self.config = config
        self.num_train_steps = config.num_train_steps
        self.prediction: Prediction = config.prediction
        self.betas = make_betas(config.schedule, config.num_train_steps, config.beta_start, config.beta_end,
                                zero_terminal_snr=config.zero_terminal_snr)
        self.alphas_cumprod = alphas_cumprod_from_betas(self.betas)  # (T,) float64, decreasing
        # (T,) increasing, for interpolation; finite even where alpha_bar = 0 (zero terminal SNR:
        # -log(tiny) = 708 stands for +inf, so the last step still maps to and from alpha_bar ~ 0)
        tiny = torch.finfo(torch.float64).tiny
        self._neg_log_ab = -self.alphas_cumprod.clamp_min(tiny).log()
        # the tables on each device they are used on: copying one from the host at every sampler or
        # training step (a pageable host-to-device copy) synchronised the host with the GPU once a
        # step (issue 15)
        self._tables: dict[tuple[str, torch.device], Tensor] = {}

    def _table(self, name: Literal["alphas_cumprod", "_neg_log_ab"], device: torch.device) -> Tensor:
        """A (T,) float64 table on ``device``, copied there once."""
        key = (name, device)
        if key not in self._tables:
            self._tables[key] = getattr(self, name).to(device)
        return self._tables[key]

    # ---- time conversions -------------------------------------------------------------------

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar at (possibly fractional) network time t; log-linear between steps. float64."""
        t = t.double().clamp(0, self.num_train_steps - 1)
        table = self._table("_neg_log_ab", t.device)
        lo = t.floor().long().clamp(max=self.num_train_steps - 2) if self.num_train_steps > 1 else t.long()
        if self.num_train_steps == 1:
            return (-table[lo]).exp()
        w = t - lo
        return (-((1 - w) * table[lo] + w * table[lo + 1])).exp()

    def net_time(self, alpha_bar: Tensor) -> Tensor:
        """Network time for a given alpha_bar: the inverse of :meth:`alpha_bar`. float64."""
        q = -torch.as_tensor(alpha_bar).double().clamp_min(torch.finfo(torch.float64).tiny).log()
        table = self._table("_neg_log_ab", q.device)
        if self.num_train_steps == 1:
            return torch.zeros_like(q)
        hi = torch.searchsorted(table, q).clamp(1, self.num_train_steps - 1)
        lo = hi - 1
        w = (q - table[lo]) / (table[hi] - table[lo])
        return (lo + w).clamp(0, self.num_train_steps - 1)

    # ---- training -----------------------------------------------------------------------------

    def add_noise(self, x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
        a, b = _coeffs(alpha_bar, x0)
        return a * x0 + b * noise

    def target(self, x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
        """What the network should output for this (x0, noise, alpha_bar)."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "x0":
            return x0
        a, b = _coeffs(alpha_bar, x0)
        return a * noise - b * x0  # v (arXiv:2202.00512 eq. 8 in our notation)

    def loss_weight(self, alpha_bar: Tensor) -> Tensor | None:
        """Per-sample loss weight (B,), or None (uniform) without min-SNR weighting."""
        if self.config.min_snr_gamma is None:
            return None
        snr = alpha_bar / (1 - alpha_bar)
        return min_snr_weight(snr, self.config.min_snr_gamma, self.prediction).float()

    def loss(
        self,
        net: nn.Module,
        x0: Tensor,
        cond: Cond | None = None,
        *,
        generator: torch.Generator | None = None,
        null_cond: Mapping[str, Any] | None = None,
        background: Tensor | None = None,
        edge: Tensor | None = None,
        tumour: Tensor | Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One training loss: sample t ~ U{0..T-1} and eps, noise x0, regress the target.

        ``cond`` goes to ``net(x_t, t, **cond)`` after per-sample CFG dropout
        (``cond_drop_prob``; ``null_cond`` supplies null values, see ``samplers.guidance``).
        Returns ``(loss, per_channel_loss)``; ``per_channel_loss`` (C,) is detached.
        """
        batch = x0.shape[0]
        t = (rand_on((batch,), generator, x0.device) * self.num_train_steps).long().clamp(max=self.num_train_steps - 1)
        noise = rand_on(x0.shape, generator, x0.device, normal=True).to(x0.dtype)
        ab = self._table("alphas_cumprod", x0.device)[t]  # (B,) float64
        x_t = self.add_noise(x0, noise, ab)
        cond = dropout_conditions(
            cond or {}, self.config.cond_drop_prob, null_cond=null_cond,
            keys=self.config.cond_drop_keys, generator=generator,
        )
        pred = net(x_t, t.float(), **cond)
        if callable(tumour):  # objective.tumour_map "input": read off x_t (= signal x0 + noise)
            tumour = tumour(x_t, ab.sqrt())
        return regression_loss(
            pred, self.target(x0, noise, ab), kind=self.config.loss,
            time_weight=self.loss_weight(ab), channel_weights=self.config.loss_channel_weights(),
            spatial_weight=spatial_weight_map(self.config.spatial_weights(),
                                              {"background": background, "edge": edge, "tumour": tumour},
                                              self.config.spatial_weight_active(((1 - ab) / ab).sqrt())),
        )

    # ---- sampling -----------------------------------------------------------------------------

    def denoiser(
        self,
        net: nn.Module,
        *,
        guidance_scale: float = 1.0,
        null_cond: Mapping[str, Any] | None = None,
        guidance_keys: Sequence[str] | None = None,
    ) -> Denoiser:
        """``denoiser(x_t, alpha_bar, cond) -> x0_hat`` for DDPM-family samplers.

        ``guidance_scale != 1`` wraps it in classifier-free guidance (``samplers.guidance``).
        """

        def denoise(x: Tensor, alpha_bar: Tensor, cond: Cond) -> Tensor:
            t = self.net_time(alpha_bar).to(device=x.device, dtype=torch.float32)  # (B,)
            pred = net(x, t, **cond)
            return convert_prediction(pred, x, alpha_bar, self.prediction, "x0")

        return cfg_denoiser(denoise, guidance_scale, null_cond, guidance_keys)

    def timesteps(
        self, num_steps: int, *, spacing: Spacing = "trailing", shape: Sequence[int] | None = None
    ) -> Tensor:
        """Sampling grid of ``num_steps + 1`` alpha_bar values, increasing, ending at 1 (data).

        ``num_steps`` distinct training steps are chosen by ``spacing`` (arXiv:2305.08891 table 2:
        ``trailing`` starts at t = T-1, so sampling starts from the noisiest trained level);
        samplers take one network evaluation per step (IDDPM respacing, arXiv:2102.09672 sec. 4).
        ``shape`` is accepted for a uniform objective API and not used.
        """
        T = self.num_train_steps
        if not 1 <= num_steps <= T:
            raise ValueError(f"num_steps must be in [1, num_train_steps={T}], got {num_steps}")
        if spacing == "trailing":
            steps = [round(T - i * T / num_steps) - 1 for i in range(num_steps)]
        elif spacing == "linspace":
            steps = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round().long().flip(0).tolist()
        elif spacing == "leading":
            steps = [i * (T // num_steps) for i in reversed(range(num_steps))]
        else:
            raise ValueError(f"unknown spacing {spacing!r}; choose trailing, linspace or leading")
        if len(set(steps)) != num_steps:
            raise ValueError(f"spacing {spacing!r} gives repeated steps for num_steps={num_steps}, T={T}")
        ab = self.alphas_cumprod[torch.tensor(steps)]
        return torch.cat([ab, torch.ones(1, dtype=ab.dtype)])
