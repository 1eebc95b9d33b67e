"""Tumour label maps at a coarser grid: ONE rule for every stage that downsamples them.

The base stage trains on ``data.downsample``-times coarser volumes whose labels come from the data
pipeline (:class:`~medidiff.data.transforms.BlockDownsampled`); the cascade's SR stage degrades
full-resolution cases to that grid to learn from, and the cascade gives the base model the
block-downsampled masks of a full-resolution case. All three use :func:`block_majority_labels`:
each f^3 block takes its most frequent label, ties going to the higher label (so a tumour label
that covers half a block survives). Region masks (WT/TC/ET) go through their label map
(:func:`block_majority_regions`), so they stay nested and equal the regions of the downsampled
label map. A per-region majority would differ where three labels meet in a block (13-22% of
the blocks of the reviewer's random label maps, 45% for uniform labels 0-3): the SR stage would
then learn from masks the base model never produces.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from medidiff.data.brats import LABEL_VALUES, REGIONS

__all__ = ["block_majority_labels", "block_majority_regions"]


def block_majority_labels(labels: Tensor, factor: int, *, num_labels: int | None = None) -> Tensor:
    """Integer label maps (..., X, Y, Z) -> (..., X/f, Y/f, Z/f), same dtype: each f^3 block's
    most frequent label, ties to the higher label. ``num_labels``: every label is below it (the
    caller knows; else the map's maximum is read, which waits for a GPU)."""
    f = int(factor)
    if f == 1:
        return labels
    *lead, x, y, z = labels.shape
    if x % f or y % f or z % f:
        raise ValueError(f"label map of spatial shape {(x, y, z)} is not divisible by the factor {f}")
    lab = labels.long().reshape(-1, x // f, f, y // f, f, z // f, f)  # (N, X/f, f, Y/f, f, Z/f, f)
    if num_labels is None:
        num_labels = int(lab.max()) + 1 if lab.numel() else 0
    n = max(num_labels, len(LABEL_VALUES))
    # one class at a time: a full-resolution one-hot of a 240^3 case would take ~0.5 GB
    counts = torch.stack([(lab == k).sum(dim=(2, 4, 6)) for k in range(n)], dim=-1)  # (N, X/f, Y/f, Z/f, K)
    top = n - 1 - torch.argmax(counts.flip(-1), dim=-1)  # argmax takes the first maximum: search from the top
    return top.reshape(*lead, x // f, y // f, z // f).to(labels.dtype)


def block_majority_regions(regions: Tensor, factor: int) -> Tensor:
    """WT/TC/ET masks (B, 3, X, Y, Z), inside where > 0 ({0, 1} or {-1, 1}) -> bool (B, 3, X/f,
    Y/f, Z/f): the regions of :func:`block_majority_labels` of their label map."""
    if regions.ndim != 5 or regions.shape[1] != len(REGIONS):
        raise ValueError(f"expected WT/TC/ET masks (B, 3, X, Y, Z), got shape {tuple(regions.shape)}")
    wt, tc, et = (regions[:, i] > 0 for i in range(3))  # (B, X, Y, Z) each
    # the label convention (medidiff.data.brats): ET = 3, TC without ET = 1, WT without TC = 2
    label = torch.where(et, 3, torch.where(tc, 1, torch.where(wt, 2, 0)))
    # labels 0-3 by construction, and membership by comparison with Python numbers: no host-device
    # copy or sync (the SR loop ran this every step: three pageable copies and a read of the maximum)
    low = block_majority_labels(label, factor, num_labels=4)  # (B, X/f, Y/f, Z/f)
    return torch.stack([functools.reduce(torch.logical_or, [low == k for k in v]) for v in REGIONS.values()], dim=1)
