"""The SR stage's training windows, cut on the host so only they cross to the device (issue 15).

The SR loss needs, per sample, a ``cascade.patch_size`` patch of the full-resolution latent and the
conditioning over that patch: the block-averaged low-res volume, noised, upsampled trilinearly and
encoded. Computed from whole cases, that meant copying two 240x240x160 cases (about 0.5 GB) to the
GPU every step to use two 96^3 patches. Every operation on the way is local, so a *window* around
the patch gives the same patch values as the whole case:

* ``degrade`` averages ``scale``^3 blocks and the Haar latent encodes ``factor``^3 blocks: a window
  whose origin and size are multiples of ``align = lcm(scale, factor)`` holds whole blocks of both;
* trilinear upsampling (``align_corners=False``) of low-res voxel k reads voxels k - 1 .. k + 1, so
  one low-res voxel (``scale`` image voxels, rounded up to ``align``) of halo on each side of the
  patch suffices; at the volume's border the window ends at the border, where the upsampling clamps
  exactly as it does on the whole case.

So a window is ``ceil(patch / align) * align + 2 * align`` voxels a side (the whole axis when the
case is not larger), moved inside the case at its borders, and the patch sits at ``patch_origin``
inside it. The augmentation noise is drawn on the window's low-res grid (by the loop's step
generator, on the device), so the patch sees Gaussian noise as before; only which numbers it gets
changed. Only the Haar codec is block-local: for other wavelets (periodized filters) or a VAE the
latent of a window is not the window of the latent, so the SR stage keeps whole cases for them
(:func:`medidiff.cascade.sr_task.train_window_steps`).

Patch origins are uniform over multiples of ``align`` (``scale`` 2 and a 1-level Haar: every latent
voxel, as before). :class:`RandSRWindowd` draws them from its MONAI random state, which the loop
seeds per item from ``(seed, epoch, index)`` (:class:`~medidiff.training.sampler.SeededItems`):
the same windows whatever the number of workers and after an exact resume. It also takes over the
left-right flip (``data.flip_prob``) so the flip touches the window only, never the whole case.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

__all__ = ["WindowGeometry", "RandSRWindowd", "PATCH_ORIGIN", "WINDOW_ORIGIN", "whole_cases"]

PATCH_ORIGIN = "patch_origin"  # the patch's origin inside its window, image voxels (tuple per item)
WINDOW_ORIGIN = "window_origin"  # the window's origin in the (flipped, if flipped) case


@dataclass(frozen=True)
class WindowGeometry:
    """Where windows and patches sit on a case grid ``spatial`` (image voxels, one entry per axis)."""

    spatial: tuple[int, ...]
    patch: tuple[int, ...]
    align: int

    def __post_init__(self) -> None:
        if len(self.spatial) != len(self.patch):
            raise ValueError(f"patch {self.patch} has {len(self.patch)} dims but the case {self.spatial} has "
                             f"{len(self.spatial)}")
        if any(p > s for p, s in zip(self.patch, self.spatial)):
            raise ValueError(f"patch {self.patch} is larger than the case grid {self.spatial}")
        if any(s % self.align for s in self.spatial):
            raise ValueError(f"case grid {self.spatial} is not a multiple of the window alignment {self.align}")

    @classmethod
    def for_sr(cls, spatial: Sequence[int], patch: Sequence[int], *, scale: int, factor: int) -> WindowGeometry:
        """Windows for a cascade of ``scale`` over a codec of ``factor`` image voxels per latent voxel."""
        return cls(tuple(int(s) for s in spatial), tuple(int(p) for p in patch), math.lcm(int(scale), int(factor)))

    @property
    def window(self) -> tuple[int, ...]:
        """Window size per axis: the patch rounded up to ``align``, plus ``align`` on each side."""
        a = self.align
        return tuple(min(s, -(-p // a) * a + 2 * a) for s, p in zip(self.spatial, self.patch))

    @property
    def origin_counts(self) -> tuple[int, ...]:
        """How many patch origins (multiples of ``align``) fit along each axis."""
        return tuple((s - p) // self.align + 1 for s, p in zip(self.spatial, self.patch))

    def place(self, origin: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(window origin in the case, patch origin inside the window) for a patch at ``origin``."""
        starts = tuple(min(max(o - self.align, 0), s - w) for o, s, w in zip(origin, self.spatial, self.window))
        return starts, tuple(o - w for o, w in zip(origin, starts))


def _plain(value: Any) -> torch.Tensor:
    """A pipeline output (MetaTensor, tensor or array) as a plain tensor sharing its memory."""
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return t.as_subclass(torch.Tensor)


class RandSRWindowd(Randomizable, MapTransform):
    """Cut one SR training window out of each case: ``keys`` (C, *spatial) -> (C, *window), plus
    :data:`PATCH_ORIGIN` and :data:`WINDOW_ORIGIN`; flip it left-right (axis 0) with ``flip_prob``.

    Reads only the window of its input and never writes into it (``cuts_window``): a memory cache
    need not hand it a copy of the whole case, and a disk cache can map the case's file instead of
    reading it all (:func:`medidiff.data.dataset.make_dataset`). With ``views`` (a cached data set)
    an unflipped window is a VIEW of the case, not a copy: the batch's stack
    (:func:`~medidiff.data.dataset.collate_cases`) is then the only copy of its bytes. Without a cache
    the case was decoded for this item alone, and a view would keep all of it alive until the stack:
    the window is copied then. In a loader worker a copy of a 96^3 BraTS-sized window cost as much
    as the rest of the item (6-7 ms of 34 ms a batch of 2 on 2 CPU cores), and the SR loop with CUDA
    graphs waited for its loader (benchmarks/results/loop_h200_20261201d). Nothing after this step
    may write into its output in place (the pipeline's dtype steps do not; the stack copies).
    """

    cuts_window = True

    def __init__(self, keys: Sequence[Hashable], geometry: WindowGeometry, *, flip_prob: float = 0.0,
                 views: bool = True) -> None:
        MapTransform.__init__(self, keys)
        self.geometry, self.flip_prob, self.views = geometry, float(flip_prob), bool(views)
        self._origin: tuple[int, ...] = (0,) * len(geometry.spatial)
        self._flip = False
        self.enabled = True  # False inside ``whole_cases``: cases pass whole (copied), unflipped

    def randomize(self, data: Any = None) -> None:
        g = self.geometry
        self._origin = tuple(int(self.R.randint(n)) * g.align for n in g.origin_counts)
        self._flip = bool(self.R.rand() < self.flip_prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            for key in self.key_iterator(d):
                d[key] = _plain(d[key]).clone(memory_format=torch.contiguous_format)
            return d
        self.randomize()
        for key in self.key_iterator(d):
            win = self.cut(_plain(d[key]), key)
            d[key] = win if self._flip or self.views else win.clone(memory_format=torch.contiguous_format)
        d[PATCH_ORIGIN], d[WINDOW_ORIGIN] = self.origins()
        return d

    def origins(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The drawn window's (patch origin inside it, its origin in the case as augmented)."""
        start, inside = self.geometry.place(self._origin)
        return inside, start

    def cut(self, x: torch.Tensor, key: Hashable = "") -> torch.Tensor:
        """The drawn window of ``x`` (``(..., *spatial)``: an item's channels, or a batch of them) as the
        pipeline gives it: a view of ``x``, or a flipped copy; ValueError naming ``key`` for a case on
        another grid. ``train.data_on_device`` replays a draw on whole cases held on the device with this
        (:class:`medidiff.training.device_data.DeviceWindow`)."""
        g = self.geometry
        grid = tuple(x.shape[-len(g.spatial):])
        if grid != g.spatial:
            raise ValueError(f"{key!r} has grid {grid}, the SR windows were set up for {g.spatial} (data.roi)")
        start, _ = g.place(self._origin)  # in the case as augmented (flipped or not)
        cut = start
        if self._flip:  # the flipped case's window [s, s + w) is the case's [S - s - w, S - s), flipped
            cut = (g.spatial[0] - g.window[0] - start[0], *start[1:])
        win = x[(..., *(slice(c, c + w) for c, w in zip(cut, g.window)))]
        return win.flip(-len(g.spatial)) if self._flip else win


@contextmanager
def whole_cases(dataset: Any) -> Iterator[Any]:
    """Inside the block, ``dataset`` (whose pipeline holds a :class:`RandSRWindowd`) yields whole, unflipped
    cases: for statistics of the whole grid (the codec's sub-band statistics)."""
    steps = [t for t in getattr(getattr(dataset, "transform", None), "transforms", ()) if isinstance(t, RandSRWindowd)]
    for t in steps:
        t.enabled = False
    try:
        yield dataset
    finally:
        for t in steps:
            t.enabled = True
