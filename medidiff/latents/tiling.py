"""Memory-bounded sliding-window application of a convolutional codec half (decode or encode).

A full BraTS volume (4 x 240 x 240 x 160 after padding) through a decoder with 32-128 channels
at full resolution needs tens of GiB of activations; tiling bounds that by the tile size.

Tiles live on the *latent* grid (``tile``, ``overlap`` in latent voxels, per axis). Tile ``i``
reads input voxels ``[s_i * in_scale, e_i * in_scale)`` and writes output voxels
``[s_i * out_scale, e_i * out_scale)`` (decode: in 1, out f; encode: in f, out 1), so tile cuts
fall on multiples of the codec factor and a stride-2 network sees the same phase in every tile.

Blending: along each axis two neighbouring tiles share an overlap region of width O (output
voxels). In it the left tile's weight falls and the right tile's rises with complementary
raised-cosine ramps (sin^2 + cos^2 = 1), flat at 1 where only one tile covers. A ``margin`` at
each end of the overlap gives zero weight to the voxels nearest a tile's own cut, where its
receptive field was truncated by the cut. Per-axis weights are partitions of unity, and so is
their product in 3D: the blend is a convex combination, so no seam can overshoot, and where
every tile's receptive field fits inside its kept region the result equals the whole-volume
output exactly (up to float rounding): for a translation-equivariant network (``norm: voxel``)
that holds everywhere once ``margin`` >= the receptive-field radius.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["tile_starts", "blend_weights_1d", "sliding_window"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of width ``tile`` covering ``[0, size)`` with >= ``overlap`` overlap.

    The last tile is shifted left to end at ``size`` (its overlap with the previous one grows).
    """
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def _ramp(n: int, margin: int, rising: bool, dtype: torch.dtype) -> torch.Tensor:
    """(n,) weights: 0 for ``margin`` voxels, raised cosine, 1 for the last ``margin`` (if rising)."""
    m = min(margin, n // 2)
    core = n - 2 * m
    if core > 0:
        t = (torch.arange(core, dtype=torch.float64) + 0.5) / core
        ramp = torch.sin(0.5 * math.pi * t) ** 2
    else:
        ramp = torch.zeros(0, dtype=torch.float64)
    w = torch.cat([torch.zeros(m, dtype=torch.float64), ramp, torch.ones(m, dtype=torch.float64)])
    if n % 2 and core == 0:  # odd n with the margin eating everything: give the middle voxel 1/2
        w = torch.cat([torch.zeros(m, dtype=torch.float64), torch.full((1,), 0.5, dtype=torch.float64),
                       torch.ones(m, dtype=torch.float64)])
    w = w if rising else 1.0 - w  # complementary: the two tiles' weights sum to 1
    return w.to(dtype)


def blend_weights_1d(starts: Sequence[int], tile: int, size: int, scale: int, margin: int,
                     dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Per-tile weights along one axis in output voxels; they sum to 1 at every output voxel.

    ``starts``/``tile``/``size``/``margin`` in latent voxels; ``scale`` output voxels per latent voxel.
    """
    ends = [min(s + tile, size) for s in starts]
    out = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        w = torch.ones((e - s) * scale, dtype=torch.float64)
        if i > 0:  # shared with the previous tile: [s, ends[i-1])
            n = (ends[i - 1] - s) * scale
            w[:n] = _ramp(n, margin * scale, rising=True, dtype=torch.float64)
        if i + 1 < len(starts):  # shared with the next tile: [starts[i+1], e)
            n = (e - starts[i + 1]) * scale
            w[len(w) - n:] = w[len(w) - n:] * _ramp(n, margin * scale, rising=False, dtype=torch.float64)
        out.append(w)
    # With a short axis three tiles can share voxels (the last one shifted left); normalising
    # keeps a partition of unity there too (a no-op where only neighbours overlap).
    total = torch.zeros(size * scale, dtype=torch.float64)
    cover = torch.zeros(size * scale, dtype=torch.float64)
    for s, w in zip(starts, out):
        total[s * scale:s * scale + len(w)] += w
        cover[s * scale:s * scale + len(w)] += 1
    fallback = total <= 0  # every covering tile had zero weight there: average them
    total = torch.where(fallback, cover, total)
    result = []
    for s, w in zip(starts, out):
        sl = slice(s * scale, s * scale + len(w))
        result.append((torch.where(fallback[sl], torch.ones_like(w), w) / total[sl]).to(dtype))
    return result


def sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    grid: Sequence[int],
    tile: int | Sequence[int],
    overlap: int | Sequence[int],
    in_scale: int,
    out_scale: int,
    out_channels: int,
    margin: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Apply ``fn`` tile by tile and blend: x (B, C, *grid * in_scale) -> (B, out_channels, *grid * out_scale).

    Args:
        fn: the network half; maps a (B, C, *t * in_scale) tile to (B, out_channels, *t * out_scale).
        grid: the latent grid size per spatial axis (tiles are laid out on it).
        tile, overlap: tile size and minimum overlap in latent voxels (an int for every axis).
        margin: latent voxels of an overlap, next to a tile's own cut, given zero weight
            (default ``overlap // 4``).

    Only one tile's activations are alive at a time; the output accumulates in ``x``'s dtype
    (float32 at least) on ``x``'s device.
    """
    nd = len(grid)
    tiles = [int(tile)] * nd if isinstance(tile, int) else [int(t) for t in tile]
    overlaps = [int(overlap)] * nd if isinstance(overlap, int) else [int(o) for o in overlap]
    if margin is None:
        margins = [o // 4 for o in overlaps]
    else:
        margins = [int(margin)] * nd if isinstance(margin, int) else [int(m) for m in margin]
    if any(t < 1 for t in tiles):
        raise ValueError(f"tile must be >= 1 latent voxel per axis, got {tiles}")
    tiles = [min(t, g) for t, g in zip(tiles, grid)]
    overlaps = [min(o, t - 1) if t < g else 0 for o, t, g in zip(overlaps, tiles, grid)]
    acc_dtype = torch.promote_types(x.dtype, torch.float32)
    out = torch.zeros((x.shape[0], out_channels, *(g * out_scale for g in grid)), dtype=acc_dtype, device=x.device)
    starts = [tile_starts(g, t, o) for g, t, o in zip(grid, tiles, overlaps)]
    weights = [blend_weights_1d(s, t, g, out_scale, m, dtype=acc_dtype)
               for s, t, g, m in zip(starts, tiles, grid, margins)]

    def visit(axis: int, idx: list[int]) -> None:
        if axis < nd:
            for i in range(len(starts[axis])):
                visit(axis + 1, idx + [i])
            return
        lo = [starts[a][i] for a, i in enumerate(idx)]
        hi = [min(s + tiles[a], grid[a]) for a, s in enumerate(lo)]
        src = (slice(None), slice(None), *(slice(s * in_scale, e * in_scale) for s, e in zip(lo, hi)))
        dst = (slice(None), slice(None), *(slice(s * out_scale, e * out_scale) for s, e in zip(lo, hi)))
        y = fn(x[src]).to(acc_dtype)  # (B, out_channels, *tile * out_scale)
        w = torch.ones((), dtype=acc_dtype)
        for a, i in enumerate(idx):  # outer product of per-axis weights, rank-agnostic
            shape = [1] * nd
            shape[a] = -1
            w = w * weights[a][i].to(x.device).view(shape)
        out[dst] += y * w

    visit(0, [])
    return out
