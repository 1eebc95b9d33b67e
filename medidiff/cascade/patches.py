"""Patches: random crops for training, and a patch-wise *denoiser* for seamless whole-volume sampling.

Why patch the denoiser and not the sampler: sampling is stochastic, so two patches sampled
independently disagree where they overlap and blending them leaves seams (and ghosting). Here the
sampler runs on the full grid with one initial noise and one per-step noise; only the network
evaluation is split. At every step each patch's x0 prediction is computed from a crop of the
*same* full-grid state and the predictions are blended with a smooth window, so overlapping
patches see identical inputs and the assembled x0 is a smooth function of position (the
"MultiDiffusion" average, arXiv:2302.08113, applied to x0 instead of to noisy samples).

Everything works for any number of spatial dims (2D tests, 3D volumes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from medidiff.utils.tensor import Cond, Denoiser, rand_on

__all__ = [
    "Window",
    "random_patch_origins",
    "crop_patches",
    "patch_starts",
    "patch_grid",
    "blend_window",
    "blend_weight_sum",
    "patchwise_denoiser",
]

Window = Literal["cosine", "gaussian", "box"]


def _check_fits(spatial: Sequence[int], patch: Sequence[int]) -> None:
    if len(spatial) != len(patch):
        raise ValueError(f"patch {tuple(patch)} has {len(patch)} dims but the volume {tuple(spatial)} has {len(spatial)}")
    if any(p > s for p, s in zip(patch, spatial)):
        raise ValueError(f"patch {tuple(patch)} is larger than the volume {tuple(spatial)}: lower the patch size")


def random_patch_origins(
    spatial: Sequence[int],
    patch: Sequence[int],
    *,
    batch: int,
    generator: torch.Generator | None,
    align: int = 1,
) -> list[tuple[int, ...]]:
    """One random patch origin per sample, fully inside ``spatial`` and a multiple of ``align``.

    Drawn from ``generator`` only (the training loop's per-step generator), so a resumed run crops
    the same patches. Returns ``batch`` tuples of start indices.
    """
    _check_fits(spatial, patch)
    counts = [(s - p) // align + 1 for s, p in zip(spatial, patch)]  # valid aligned origins per axis
    u = rand_on((batch, len(spatial)), generator, "cpu")  # (B, ndim) in [0, 1)
    idx = (u * torch.tensor(counts, dtype=u.dtype)).floor().long().clamp_max(torch.tensor(counts) - 1)
    return [tuple(int(i) * align for i in row) for row in idx.tolist()]


def crop_patches(x: Tensor, origins: Sequence[Sequence[int]], patch: Sequence[int]) -> Tensor:
    """Per-sample crops: x (B, C, *S), origins[b] -> (B, C, *patch)."""
    if len(origins) != x.shape[0]:
        raise ValueError(f"{len(origins)} origins for a batch of {x.shape[0]}")
    return torch.stack([x[(i, slice(None), *(slice(o, o + p) for o, p in zip(org, patch)))]
                        for i, org in enumerate(origins)])


def patch_starts(size: int, patch: int, overlap: float, align: int = 1) -> list[int]:
    """Start indices of patches covering ``[0, size)`` along one axis, first at 0, last flush with the end.

    Neighbours share about ``overlap * patch`` voxels; starts are spread evenly (so overlaps are
    equal) and rounded to multiples of ``align`` (the last one is exactly ``size - patch``).
    """
    if patch >= size:
        return [0]
    stride = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((size - patch) / stride) + 1
    starts = [round(i * (size - patch) / (n - 1) / align) * align for i in range(n)]
    starts[-1] = size - patch
    return sorted(set(starts))


def patch_grid(spatial: Sequence[int], patch: Sequence[int], overlap: float, align: int = 1) -> list[tuple[int, ...]]:
    """Every patch origin of a regular overlapping grid over ``spatial`` (product of per-axis starts)."""
    _check_fits(spatial, patch)
    return list(itertools.product(*(patch_starts(s, p, overlap, align) for s, p in zip(spatial, patch))))


def blend_window(patch: Sequence[int], kind: Window = "cosine", *, sigma_scale: float = 0.125,
                 floor: float = 1e-4) -> Tensor:
    """Blending weights (*patch) float32, separable and strictly positive.

    cosine: sin^2(pi (i + 1/2) / n) per axis (Hann, no zero at the edge); gaussian: MONAI
    sliding-window style, sigma = sigma_scale * n; box: all ones (no blending, for comparison).
    Weights are floored at ``floor`` so voxels near the volume border, covered only by a
    patch's edge, keep a well-defined normalised weight.
    """
    w = torch.ones(())
    for n in patch:
        i = torch.arange(n, dtype=torch.float64) + 0.5
        if kind == "cosine":
            axis = torch.sin(math.pi * i / n) ** 2
        elif kind == "gaussian":
            axis = torch.exp(-0.5 * ((i - n / 2) / (sigma_scale * n)) ** 2)
        elif kind == "box":
            axis = torch.ones(n, dtype=torch.float64)
        else:
            raise ValueError(f"blend window {kind!r} unknown: use 'cosine', 'gaussian' or 'box'")
        w = w[..., None] * axis
    return w.clamp_min(floor).float()


def blend_weight_sum(spatial: Sequence[int], patch: Sequence[int], origins: Sequence[Sequence[int]],
                     window: Tensor) -> Tensor:
    """Sum of the placed windows (*spatial): the normaliser of a blended assembly (> 0 where covered)."""
    total = torch.zeros(tuple(spatial), dtype=window.dtype, device=window.device)
    for org in origins:
        total[tuple(slice(o, o + p) for o, p in zip(org, patch))] += window
    return total


def _split_cond(cond: Cond, spatial: Sequence[int], ndim: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(conditions on the voxel grid, per-sample ones): grid ones are cropped with x, others repeated."""
    grid, other = {}, {}
    for key, value in cond.items():
        if value.ndim == ndim and tuple(value.shape[2:]) != tuple(spatial):
            raise ValueError(f"cond[{key!r}] has spatial shape {tuple(value.shape[2:])} but x has {tuple(spatial)}: "
                             "image conditions must live on the sampled grid")
        (grid if value.ndim == ndim else other)[key] = value
    return grid, other


def patchwise_denoiser(
    denoiser: Denoiser,
    patch: Sequence[int],
    *,
    overlap: float = 0.25,
    window: Window = "cosine",
    batch_size: int = 4,
    align: int = 1,
) -> Denoiser:
    """Wrap ``denoiser(x, t, cond) -> x0`` so it is evaluated on overlapping patches of x.

    x (B, C, *S): every patch of the grid (``patch_grid(S, patch, overlap, align)``) gets the crop
    of x and of every grid-shaped condition ((B, C_c, *S), e.g. ``cond_image``); per-sample
    conditions ((B,), (B, k), e.g. ``scalars``) are repeated. The x0 predictions are averaged
    with weights ``blend_window(patch, window)``. For a purely local net this equals the
    whole-volume denoiser exactly; for a UNet it differs only within its receptive field of a
    patch border (and by GroupNorm statistics), which the window weights down. ``batch_size``
    patches go through the net per call (times B). A volume no larger than ``patch`` is one call.
    """
    patch = tuple(int(p) for p in patch)
    win_cpu = blend_window(patch, window)
    cache: dict[tuple, tuple[list[tuple[int, ...]], Tensor, Tensor]] = {}

    def layout(spatial: tuple[int, ...], device: torch.device) -> tuple[list[tuple[int, ...]], Tensor, Tensor]:
        key = (spatial, str(device))
        if key not in cache:
            origins = patch_grid(spatial, patch, overlap, align)
            win = win_cpu.to(device)
            cache[key] = (origins, win, blend_weight_sum(spatial, patch, origins, win))
        return cache[key]

    def denoise(x: Tensor, t: Tensor, cond: Cond) -> Tensor:
        spatial = tuple(x.shape[2:])
        if all(p >= s for p, s in zip(patch, spatial)):
            return denoiser(x, t, cond)
        origins, win, norm = layout(spatial, x.device)
        grid, other = _split_cond(cond, spatial, x.ndim)
        b = x.shape[0]
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)  # (B, C, *S) weighted sum
        for first in range(0, len(origins), batch_size):
            chunk = origins[first:first + batch_size]
            sl = [(slice(None), slice(None), *(slice(o, o + p) for o, p in zip(org, patch))) for org in chunk]
            xs = torch.cat([x[s] for s in sl])  # (n*B, C, *patch), patch-major
            cs = {k: torch.cat([v[s] for s in sl]) for k, v in grid.items()}
            cs.update({k: torch.cat([v] * len(chunk)) for k, v in other.items()})
            x0 = denoiser(xs, torch.cat([t] * len(chunk)), cs)  # (n*B, C, *patch)
            for s, piece in zip(sl, x0.split(b)):
                out[s] += piece.float() * win
        return (out / norm).to(x.dtype)

    return denoise
