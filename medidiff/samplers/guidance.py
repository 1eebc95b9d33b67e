"""Everything that wraps a denoiser: condition dropout, classifier-free guidance, x0 clamping.

Classifier-free guidance (CFG, arXiv:2207.12598) combines a conditional and an unconditional
prediction, ``uncond + scale * (cond - uncond)``. We combine in *x0 space* because every
denoiser returns x0 (DESIGN style 4). This is exactly the usual eps-space (DDPM) or
velocity-space (flow) guidance: for fixed ``x_t`` and ``t``, eps = (x_t - sqrt(ab) x0) /
sqrt(1 - ab) and v = (x_t - x0) / t are affine in x0 with the same coefficients for both
branches, and an affine map commutes with a combination whose weights sum to one
(``(1 - scale) * uncond + scale * cond``). The tests check this equivalence.

Null conditioning. The network learns the unconditional model from samples whose conditions
were replaced, during training, by *null* values (``drop_conditions``); sampling must use the
same values. Conventions (override any of them with ``null_cond[key]``):

* ``class_labels`` -> the null class index, which the caller must give (usually
  ``num_classes``: the net has one extra embedding row). There is no safe default.
* ``context`` -> ``null_cond['context']`` (the text encoder's empty-prompt embedding, with
  ``null_cond['context_mask']``), else zeros with ``context_mask`` all False: nets must read an
  all-False mask as "no context" (e.g. skip cross-attention for that sample) rather than
  softmax over nothing.
* ``cond_image`` and ``scalars`` -> zeros (images are in [-1, 1], so zero is "no information"
  only by convention; give a learned/sentinel value in ``null_cond`` if the net needs one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medidiff.utils.tensor import Cond, Denoiser, append_dims, rand_on

__all__ = [
    "Guidance",
    "drop_conditions",
    "dropout_conditions",
    "null_conditions",
    "cat_conditions",
    "cfg_denoiser",
    "wrap_denoiser",
]


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance settings passed to samplers.

    ``scale`` 1 is the conditional model (no extra forward pass), 0 the unconditional one.
    """

    scale: float = 1.0
    null_cond: Mapping[str, Any] | None = None
    keys: Sequence[str] | None = None  # conditions replaced in the unconditional branch; None = all


def _null_value(key: str, value: Tensor, null_cond: Mapping[str, Any]) -> Tensor:
    """Null value for ``key`` with the shape of ``value`` (B, ...)."""
    if key in null_cond:
        null = torch.as_tensor(null_cond[key], device=value.device)
        if null.dtype != value.dtype:
            null = null.to(value.dtype)
        if null.shape == value.shape[1:] or null.ndim == 0:
            return null.expand_as(value)
        if null.shape[0] == 1 and null.shape[1:] == value.shape[1:]:
            return null.expand_as(value)
        if null.shape == value.shape:
            return null
        raise ValueError(
            f"null_cond[{key!r}] has shape {tuple(null.shape)}; expected {tuple(value.shape[1:])} "
            f"(one sample) or {tuple(value.shape)} to replace cond[{key!r}]"
        )
    if key == "class_labels":
        raise ValueError(
            "dropping class_labels needs the null class index: pass null_cond={'class_labels': "
            "num_classes} (the net reserves embedding row num_classes for 'no class')"
        )
    if key == "context_mask":
        if "context" in null_cond:
            raise ValueError(
                "null_cond gives 'context' but no 'context_mask': pass the empty-prompt mask as well"
            )
        return torch.zeros_like(value)  # all False: no valid context token
    return torch.zeros_like(value)


def drop_conditions(
    cond: Cond,
    drop_mask: Tensor,
    null_cond: Mapping[str, Any] | None = None,
    keys: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Replace the conditions of samples where ``drop_mask`` (B,) is True by their null values.

    ``keys`` limits which conditions are dropped (None = all); ``context_mask`` always follows
    ``context``. Samples with ``drop_mask`` False are returned untouched (same values).
    """
    null_cond = null_cond or {}
    drop_keys = set(cond) if keys is None else set(keys)
    if "context" in drop_keys:
        drop_keys.add("context_mask")
    out: dict[str, Tensor] = {}
    for key, value in cond.items():
        if key not in drop_keys:
            out[key] = value
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"cond[{key!r}] must be a tensor with a batch dim, got {type(value).__name__}")
        if value.shape[0] != drop_mask.shape[0]:
            raise ValueError(f"cond[{key!r}] has batch {value.shape[0]}, drop_mask has {drop_mask.shape[0]}")
        null = _null_value(key, value, null_cond)
        out[key] = torch.where(append_dims(drop_mask.to(value.device), value.ndim), null, value)
    return out


def dropout_conditions(
    cond: Cond,
    prob: float,
    *,
    null_cond: Mapping[str, Any] | None = None,
    keys: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Training-time CFG dropout: each sample's conditions are nulled with probability ``prob``,
    independently per sample (arXiv:2207.12598 sec. 3.2)."""
    if prob <= 0.0 or not cond:
        return dict(cond)
    first = next(iter(cond.values()))
    drop = rand_on((first.shape[0],), generator, first.device) < prob  # (B,)
    return drop_conditions(cond, drop, null_cond, keys)


def null_conditions(
    cond: Cond, null_cond: Mapping[str, Any] | None = None, keys: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """The unconditional version of ``cond`` (every sample dropped)."""
    if not cond:
        return {}
    batch = next(iter(cond.values())).shape[0]
    device = next(iter(cond.values())).device
    return drop_conditions(cond, torch.ones(batch, dtype=torch.bool, device=device), null_cond, keys)


def cat_conditions(a: Cond, b: Cond) -> dict[str, Tensor]:
    """Concatenate two condition dicts along the batch dim (for one cond+uncond forward pass)."""
    if set(a) != set(b):
        raise ValueError(f"condition keys differ: {sorted(a)} vs {sorted(b)}")
    return {k: torch.cat([a[k], b[k]], dim=0) for k in a}


def cfg_denoiser(
    denoiser: Denoiser,
    scale: float,
    null_cond: Mapping[str, Any] | None = None,
    keys: Sequence[str] | None = None,
    *,
    batched: bool = True,
) -> Denoiser:
    """Classifier-free-guided denoiser: ``uncond + scale * (cond - uncond)`` in x0 space.

    The unconditional branch uses ``null_conditions(cond, null_cond, keys)``. With
    ``batched`` the two branches run as one forward pass of batch 2B (faster on GPUs; uses
    twice the activation memory). ``scale == 1`` returns the conditional prediction itself.
    """
    if scale == 1.0:
        return denoiser

    def guided(x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        if not cond:
            raise ValueError(f"guidance scale {scale} needs conditioning, but cond is empty")
        uncond = null_conditions(cond, null_cond, keys)
        if batched:
            both = denoiser(torch.cat([x, x]), torch.cat([t, t]), cat_conditions(cond, uncond))
            x0_c, x0_u = both.chunk(2)
        else:
            x0_c, x0_u = denoiser(x, t, cond), denoiser(x, t, uncond)
        return x0_u + scale * (x0_c - x0_u)

    return guided


def wrap_denoiser(
    denoiser: Denoiser,
    *,
    guidance: Guidance | None = None,
    clip_x0: bool = False,
    x0_transform: Callable[[Tensor], Tensor] | None = None,
) -> Denoiser:
    """Apply guidance, then clamp x0 to [-1, 1] (``clip_x0``), then ``x0_transform``.

    ``clip_x0`` clamps in the MODEL's space (whatever the denoiser returns): image intensities
    for a pixel-space model, latent coefficients for a latent one. ``x0_transform`` is for
    constraints that live elsewhere than the model's space, e.g. WDM's wavelet-coefficient model
    clamps in image space: ``lambda c: dwt(idwt(c).clamp(-1, 1))``
    (``medidiff.generation.image_space_clamp(codec)``).
    """
    if guidance is not None and guidance.scale != 1.0:
        denoiser = cfg_denoiser(denoiser, guidance.scale, guidance.null_cond, guidance.keys)
    if not clip_x0 and x0_transform is None:
        return denoiser

    def post(x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        x0 = denoiser(x, t, cond)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        if x0_transform is not None:
            x0 = x0_transform(x0)
        return x0

    return post
