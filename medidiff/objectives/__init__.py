"""Diffusion objectives: DDPM (epsilon | v | x0) and flow matching (velocity).

Every objective offers the same small API, so the training loop and the sampling dispatcher
never branch on which one they hold:

* ``kind``: ``"ddpm"`` or ``"flow"`` (which samplers apply, see ``samplers.SAMPLER_OBJECTIVE``);
* ``loss(net, x0, cond, *, generator, null_cond) -> (loss, per_channel_loss)``;
* ``denoiser(net, *, guidance_scale, null_cond) -> denoiser(x_t, t, cond) -> x0_hat``;
* ``timesteps(num_steps, *, shape, spacing) -> (num_steps + 1,)`` sampling grid in the
  objective's sampler coordinate (alpha_bar for DDPM, flow time for flow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from medidiff.objectives.config import ObjectiveConfig
from medidiff.objectives.ddpm import DDPMObjective, convert_prediction, min_snr_weight
from medidiff.objectives.flow import FlowMatchingObjective
from medidiff.utils.tensor import Cond, Denoiser

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveConfig",
    "DDPMObjective",
    "FlowMatchingObjective",
    "build_objective",
    "convert_prediction",
    "min_snr_weight",
]


class Objective(Protocol):
    kind: Literal["ddpm", "flow"]
    config: ObjectiveConfig
    num_train_steps: int

    def loss(
        self,
        net: nn.Module,
        x0: Tensor,
        cond: Cond | None = None,
        *,
        generator: torch.Generator | None = None,
        null_cond: Mapping[str, Any] | None = None,
    ) -> tuple[Tensor, Tensor]: ...

    def denoiser(
        self,
        net: nn.Module,
        *,
        guidance_scale: float = 1.0,
        null_cond: Mapping[str, Any] | None = None,
        guidance_keys: Sequence[str] | None = None,
    ) -> Denoiser: ...

    def timesteps(self, num_steps: int, *, shape: Sequence[int] | None = None, spacing: Any = ...) -> Tensor: ...


OBJECTIVES: dict[str, type] = {"ddpm": DDPMObjective, "flow": FlowMatchingObjective}


def build_objective(config: ObjectiveConfig) -> Objective:
    """The objective named by ``config.type``."""
    return OBJECTIVES[config.type](config)
