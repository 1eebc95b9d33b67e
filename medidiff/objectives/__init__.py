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
from dataclasses import replace
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from medidiff.errors import MedidiffError
from medidiff.objectives.channels import per_image_channel, split_channel_names
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
    "resolve_channel_weights",
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
        background: Tensor | None = None,
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


def build_objective(config: ObjectiveConfig, channel_names: Sequence[str] | None = None) -> Objective:
    """The objective named by ``config.type``. Pass ``channel_names`` (the latent codec's, e.g.
    ``"LLH:t1n"``): they resolve ``detail_weight`` into per-channel loss weights and ``x0_skip_sigmas``
    into one skip per channel. An objective built without names refuses a weighted loss, and a flow
    objective with ``x0_skip_sigmas`` refuses to be built (its sampler would use the wrong skip)."""
    resolved = config if channel_names is None else resolve_channel_weights(config, channel_names)
    if config.type == "flow":
        return FlowMatchingObjective(resolved, channel_names=channel_names)
    return OBJECTIVES[config.type](resolved)


def resolve_channel_weights(config: ObjectiveConfig, channel_names: Sequence[str] | None) -> ObjectiveConfig:
    """``config`` with ``detail_weight`` and ``detail_weights`` folded into ``channel_weights``:
    every channel whose sub-band is not the coarsest (its name holds an H: ``"LLH:t1n"``,
    ``"LLL.HLL:t2f"``) weighs its image channel's ``detail_weights`` entry, else ``detail_weight``,
    times its ``channel_weights`` entry (1 when unset)."""
    if config.detail_weight == 1.0 and not config.detail_weights:
        return config
    bands, _ = split_channel_names(channel_names, "detail_weight")
    if not all(set(b) <= set("LH.") for b in bands):
        raise MedidiffError(f"objective.detail_weight ({config.detail_weight}) / detail_weights weight wavelet sub-bands, "
                            f"but this model's channels are not named by sub-band ({list(channel_names or [])[:3]}...): "
                            "use a wavelet latent or set detail_weight: 1 and no detail_weights")
    detail = per_image_channel(config.detail_weights or {}, config.detail_weight, channel_names, "detail_weights")
    base = config.channel_weights or [1.0] * len(bands)
    if len(base) != len(bands):
        raise MedidiffError(f"objective.channel_weights has {len(base)} entries but the model has {len(bands)} channels")
    weights = [w * (d if "H" in b else 1.0) for w, b, d in zip(base, bands, detail)]
    return replace(config, channel_weights=weights, detail_weight=1.0, detail_weights=None)
