"""Rank-agnostic tensor helpers and the types shared by objectives and samplers.

Everything here works for any tensor rank, so the same objective/sampler code serves
(B, C) toy vectors in tests, (B, C, H, W) slices and (B, C, D, H, W) volumes (DESIGN style 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "Cond",
    "Denoiser",
    "append_dims",
    "spatial_weight_map",
    "batch_time",
    "mean_per_channel",
    "randn_per_sample",
    "rand_on",
    "regression_loss",
    "tensor_on",
]

Cond = Mapping[str, Tensor]
"""Conditioning passed to a network as keyword arguments: ``net(x, t, **cond)``.

Known keys: ``cond_image`` (B, C_c, *spatial), ``class_labels`` (B,) long, ``scalars`` (B, S),
``context`` (B, L, E), ``context_mask`` (B, L) bool.
"""

Denoiser = Callable[[Tensor, Tensor, Cond], Tensor]
"""``denoiser(x_t, t, cond) -> x0_hat``: the one interface every sampler uses.

``t`` is (B,) in the *sampler coordinate* of the objective (alpha_bar for DDPM, flow time in
[0, 1] for flow matching), never the network's internal time; the objective's adapter converts.
"""


def append_dims(v: Tensor | float, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample (B,) tensor broadcasts against rank ``ndim``.

    ``append_dims(t, x.ndim) * x`` replaces ``t[:, None, None, None] * x`` for any rank.
    A 0-d tensor or Python float is returned as a 0-d tensor (broadcasts everywhere).
    """
    v = torch.as_tensor(v)
    if v.ndim > ndim:
        raise ValueError(f"append_dims: input has {v.ndim} dims, more than the target {ndim}")
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


def mean_per_channel(x: Tensor) -> Tensor:
    """Mean over every dim after the channel dim: (B, C, *spatial) -> (B, C); (B, C) is returned."""
    if x.ndim < 2:
        raise ValueError(f"mean_per_channel expects (B, C, ...), got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], x.shape[1], -1).mean(-1)


def randn_per_sample(
    shape: Sequence[int],
    generators: Sequence[torch.Generator] | None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    pin_memory: bool = False,
) -> Tensor:
    """Standard normal noise of ``shape`` (B, ...), sample i drawn from ``generators[i]`` alone
    (``pin_memory``: into page-locked host memory, for a CPU ``device``).

    This is what makes sample i identical whether it is generated alone or inside a batch: its
    noise never depends on the batch size or on its position. Each row is drawn on its generator's
    device: straight into the output when that is ``device`` (the samplers' per-step noise, no
    copy and no host round trip), else drawn there and copied (CPU generators give the same
    numbers on every machine: the starting noise). Both give ``torch.randn(shape[1:],
    generator=g)`` exactly. With ``generators=None`` the global RNG is used (not per-sample
    reproducible).
    """
    shape = tuple(int(s) for s in shape)
    if generators is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if len(generators) != shape[0]:
        raise ValueError(
            f"got {len(generators)} generators for a batch of {shape[0]}: pass one seed/generator per sample"
        )
    out = torch.empty(shape, device=device if device is not None else generators[0].device, dtype=dtype,
                      pin_memory=pin_memory)  # (B, ...)
    for row, g in zip(out, generators):
        if g.device.type == out.device.type and g.device.index in (None, out.device.index):
            row.normal_(generator=g)  # what torch.randn does, into the batch row
        else:
            row.copy_(torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype))
    return out


def rand_on(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str | None, *, normal: bool = False
) -> Tensor:
    """Uniform [0, 1) (or standard normal) numbers drawn on ``generator``'s device, then moved.

    Lets a CPU generator drive GPU training reproducibly (a CUDA tensor cannot be filled from
    a CPU generator directly).
    """
    gen_device = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(tuple(shape), generator=generator, device=gen_device).to(device)


def regression_loss(
    pred: Tensor,
    target: Tensor,
    *,
    kind: str = "l2",
    time_weight: Tensor | None = None,
    channel_weights: Sequence[float] | None = None,
    spatial_weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample-weighted, per-channel-weighted L2/L1 loss of (B, C, ...) tensors.

    Returns ``(loss, per_channel)``: ``per_channel`` (C,) is the time-weighted mean over batch
    and space (detached, for logging per modality / wavelet sub-band), and
    ``loss = sum_c w_c per_channel_c / sum_c w_c`` (the plain mean when weights are equal).
    ``spatial_weight`` (B, 1, ...) or (B, C, ...) weighs positions within each case (and channel), normalised
    to a mean of 1 per case and channel: the mean over space becomes a weighted mean, and the loss keeps its
    scale; a channel whose weight is uniform weighs as without it.
    """
    if pred.shape != target.shape:
        raise ValueError(f"network output {tuple(pred.shape)} does not match the target {tuple(target.shape)}")
    diff = pred.float() - target.float()
    err = diff.square() if kind == "l2" else diff.abs()
    if spatial_weight is not None:
        w = spatial_weight.float()
        err = err * (w / w.mean(dim=tuple(range(2, w.ndim)), keepdim=True))
    per_bc = mean_per_channel(err)  # (B, C)
    if time_weight is not None:
        per_bc = per_bc * time_weight.to(per_bc).reshape(-1, 1)
    per_channel = per_bc.mean(0)  # (C,)
    if channel_weights is None:
        loss = per_channel.mean()
    else:
        if len(channel_weights) != per_channel.shape[0]:
            raise ValueError(
                f"channel_weights has {len(channel_weights)} entries but the network outputs "
                f"{per_channel.shape[0]} channels: give one weight per channel (sub-band)"
            )
        w = tensor_on(tuple(channel_weights), per_channel.dtype, per_channel.device)
        loss = (per_channel * w).sum() / w.sum()
    return loss, per_channel.detach()


def spatial_weight_map(weights: Mapping[str, float], maps: Mapping[str, Tensor | None],
                       active: Tensor | None = None) -> Tensor | None:
    """(B, 1, ...) loss weights from ``weights`` (objective.background_weight, edge_weight, tumour_weight) and
    the maps they weigh (``maps``, by :data:`medidiff.objectives.config.SPATIAL_WEIGHTS`' names: 1 on the
    background, the brain's edge, the tumour, 0 elsewhere): each weight where its map holds, their product
    where several do, 1 elsewhere; None when every weight is 1 (off). A weight without its map is refused:
    silently training unweighted would ignore the config. ``active`` (B,) bool: the samples the weights
    apply to (objective.spatial_weight_max_sigma); the others weigh 1 everywhere."""
    from medidiff.objectives.config import SPATIAL_WEIGHTS

    out = []
    for key, name in SPATIAL_WEIGHTS.items():
        w = float(weights.get(key, 1.0))
        if w == 1.0:
            continue
        where = maps.get(name)
        if where is None:
            from medidiff.errors import MedidiffError

            raise MedidiffError(f"objective.{key} ({w}) needs the {name} map, which this training path does not "
                                f"give (a latent cache, unlabelled cases, or a stage that does not support it): "
                                f"set objective.{key}: 1")
        where = where.float()
        if active is not None:
            where = where * active.to(where.device, where.dtype).reshape(-1, *[1] * (where.ndim - 1))
        out.append(1.0 + (w - 1.0) * where)
    return math.prod(out) if out else None


def batch_time(value: float, x: Tensor) -> Tensor:
    """One time value for every sample of ``x``: (B,) float64 on ``x``'s device (sampler grids are float64)."""
    return torch.full((x.shape[0],), value, dtype=torch.float64, device=x.device)


@functools.lru_cache(maxsize=32)
def tensor_on(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Per-channel constants (loss weights, skip sigmas) as a tensor on ``device``, made once: a fresh
    copy from host memory on every step made the host wait for the GPU each step (the training loop's
    one per-step synchronisation at the shipped anatomy recipe, found with torch's sync debug mode on an H200)."""
    return torch.tensor(values, dtype=dtype, device=device)

