"""Flow matching / rectified flow objective (arXiv:2210.02747, arXiv:2209.03003, SD3 arXiv:2403.03206).

Path ``x_t = (1 - t) x0 + t eps`` with t in [0, 1] (t = 1 noise, t = 0 data). The network
predicts the velocity ``v = dx_t/dt = eps - x0`` (``flow_target: velocity``) or the clean sample
x0 itself (``flow_target: x0``). (MAISI-v2 regresses ``x0 - eps``, the same
field with the opposite sign; the choice only matters for loading its weights.) The network
sees ``t * num_train_steps`` so its time embedding has the DDPM range.

The sampler interface is data prediction: ``denoiser(x_t, t, cond) -> x0_hat = x_t - t v_hat``,
with t the flow time itself (the sampling grid from :meth:`FlowMatchingObjective.timesteps`).

Why not MONAI's ``RFlowScheduler``: it is stateful (``set_timesteps``/``step``), and we need
pure Euler/Heun samplers and continuous time; we reproduce its timestep shift (power 1/3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medidiff.errors import MedidiffError
from medidiff.objectives.channels import per_image_channel
from medidiff.objectives.config import ObjectiveConfig
from medidiff.objectives.schedules import logit_normal, resolution_shift, shift_time
from medidiff.samplers.guidance import cfg_denoiser, dropout_conditions
from medidiff.utils.tensor import (Cond, Denoiser, append_dims, rand_on, regression_loss, spatial_weight_map,
                                   tensor_on)

__all__ = ["FlowMatchingObjective", "X0_WEIGHT_T_MIN"]

X0_WEIGHT_T_MIN = 0.05  # x0_time_power's floor on t: the weight is at most 0.05^-power


class FlowMatchingObjective:
    """Flow matching with a velocity or x0 network; ``kind == "flow"`` (samplers ``euler`` and ``heun``)."""

    kind: Literal["flow"] = "flow"

    def __init__(self, config: ObjectiveConfig | None = None, *, channel_names: Sequence[str] | None = None) -> None:
        """``channel_names`` (the latent codec's) spread ``x0_skip_sigmas`` over the latent channels; a
        config with them is refused without names (training and sampling must use the same skip)."""
        config = config or ObjectiveConfig(type="flow")
        if config.type != "flow":
            raise ValueError(f"FlowMatchingObjective needs objective.type 'flow', got {config.type!r}")
        self.config = config
        self.num_train_steps = config.num_train_steps
        self.skip_sigmas: tuple[float, ...] | None = None  # one per latent channel, or None: x0_skip_sigma for all
        if config.x0_skip_sigmas:
            if channel_names is None:
                raise MedidiffError("objective.x0_skip_sigmas is set per image channel: build the objective with the "
                                    "codec's channel names (build_objective(config, codec.channel_names))")
            self.skip_sigmas = tuple(per_image_channel(config.x0_skip_sigmas, config.x0_skip_sigma, channel_names,
                                                       "x0_skip_sigmas"))

    # ---- time -----------------------------------------------------------------------------------

    def shift(self, shape: Sequence[int] | None) -> float:
        """Time-shift factor for volumes of spatial ``shape`` (1.0 when ``time_shift`` is off)."""
        if not self.config.time_shift:
            return 1.0
        if shape is None:
            raise ValueError("objective.time_shift is on: pass the spatial shape of the volumes being sampled")
        return resolution_shift(math.prod(shape), self.config.shift_base_voxels, self.config.shift_power)

    def sample_time(
        self,
        n: int,
        *,
        shape: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times (n,) in [0, 1]: uniform or logit-normal, then the resolution shift."""
        if self.config.time_sampling == "uniform":
            t = rand_on((n,), generator, device)
        else:
            c = self.config
            t = logit_normal(n, mean=c.logit_mean, std=c.logit_std, generator=generator, device=device)
        return shift_time(t, self.shift(shape))

    def net_time(self, t: Tensor) -> Tensor:
        return t * self.num_train_steps

    # ---- training -------------------------------------------------------------------------------

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        t = append_dims(t, x0.ndim).to(x0.dtype)
        return (1 - t) * x0 + t * noise

    def target(self, x0: Tensor, noise: Tensor) -> Tensor:
        """What the network regresses: dx_t/dt, or x0 itself."""
        return x0 if self.config.flow_target == "x0" else noise - x0

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
        """One training loss: sample t and eps, interpolate, regress the velocity (L2 or L1).

        Returns ``(loss, per_channel_loss)``; ``per_channel_loss`` (C,) is detached.
        """
        t = self.sample_time(x0.shape[0], shape=x0.shape[2:], generator=generator, device=x0.device)  # (B,)
        noise = rand_on(x0.shape, generator, x0.device, normal=True).to(x0.dtype)
        x_t = self.add_noise(x0, noise, t)
        cond = dropout_conditions(
            cond or {}, self.config.cond_drop_prob, null_cond=null_cond,
            keys=self.config.cond_drop_keys, generator=generator,
        )
        pred = self.skip(net(x_t, self.net_time(t).float(), **cond), x_t, t)
        if callable(tumour):  # objective.tumour_map "input": read off x_t (= signal x0 + noise)
            tumour = tumour(x_t, 1 - t)
        return regression_loss(
            pred, self.target(x0, noise), kind=self.config.loss, time_weight=self.time_weight(t),
            channel_weights=self.config.loss_channel_weights(),
            spatial_weight=spatial_weight_map(self.config.spatial_weights(),
                                              {"background": background, "edge": edge, "tumour": tumour},
                                              self.config.spatial_weight_active(t.float() / (1 - t.float()))),
        )

    def skip(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The net's output as x0 under ``x0_skip_sigma`` (c_skip x_t + c_out out, EDM's preconditioning on
        the path x_t = (1 - t) x0 + t eps), per channel under ``x0_skip_sigmas``; the output unchanged where
        the skip is off (sigma 0)."""
        if self.skip_sigmas is None:
            s: float | Tensor = self.config.x0_skip_sigma
            if not s:
                return out
        else:
            if len(self.skip_sigmas) != x_t.shape[1]:
                raise MedidiffError(f"objective.x0_skip_sigmas spread over {len(self.skip_sigmas)} latent channels, "
                                    f"but the latent has {x_t.shape[1]}")
            s = append_dims(tensor_on(self.skip_sigmas, torch.float32, x_t.device), x_t.ndim - 1)  # (C, 1, 1, 1)
        t = append_dims(t, x_t.ndim).to(torch.float32)
        a = 1 - t
        var = a * a * (s * s) + t * t  # the variance of x_t for data of std s
        c_skip, c_out = a * (s * s) / var, t * s / var.sqrt()
        if isinstance(s, Tensor):  # sigma 0: the output itself (c_skip 0, c_out 1; 0/0 at t = 0 otherwise)
            on = s > 0
            c_skip, c_out = torch.where(on, c_skip, 0.0), torch.where(on, c_out, 1.0)
        return torch.addcmul(c_skip * x_t, c_out, out)

    def time_weight(self, t: Tensor) -> Tensor | None:
        """Per-sample loss weight (B,) of ``x0_time_power``, or None (uniform)."""
        p = self.config.x0_time_power
        return t.float().clamp_min(X0_WEIGHT_T_MIN).pow(-p) if p else None

    # ---- sampling -------------------------------------------------------------------------------

    def denoiser(
        self,
        net: nn.Module,
        *,
        guidance_scale: float = 1.0,
        null_cond: Mapping[str, Any] | None = None,
        guidance_keys: Sequence[str] | None = None,
    ) -> Denoiser:
        """``denoiser(x_t, t, cond) -> x0_hat`` for flow samplers: ``x_t - t v_hat``, or the net's
        output itself under ``flow_target: x0`` (through :meth:`skip` with ``x0_skip_sigma``)."""
        predicts_x0 = self.config.flow_target == "x0"

        def denoise(x: Tensor, t: Tensor, cond: Cond) -> Tensor:
            t = t.to(x.device)
            out = net(x, self.net_time(t).float(), **cond)
            return self.skip(out, x, t) if predicts_x0 else x - append_dims(t, x.ndim).to(x.dtype) * out

        return cfg_denoiser(denoise, guidance_scale, null_cond, guidance_keys)

    def timesteps(
        self, num_steps: int, *, shape: Sequence[int] | None = None, spacing: str | None = None
    ) -> Tensor:
        """Sampling grid of ``num_steps + 1`` flow times, from 1 (noise) down to 0 (data).

        Uniform in t, then the same resolution shift as training (``shape`` = spatial shape).
        ``spacing`` is a DDPM option and must be left unset here.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if spacing not in (None, "trailing"):
            raise ValueError(
                f"spacing {spacing!r} applies to DDPM grids only; flow grids are uniform in t before the shift"
            )
        t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
        return shift_time(t, self.shift(shape))
