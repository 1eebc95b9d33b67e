"""Configuration of the data pipeline (the ``data:`` section of an experiment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from medidiff.config import ConfigError
from medidiff.data.brats import MODALITIES

__all__ = ["DataConfig", "nearest_multiple", "check_roi_divisible", "intensity_scale", "check_scale_labels"]


def nearest_multiple(n: int, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``n`` (ties round up; never below ``multiple``)."""
    lo = (n // multiple) * multiple
    hi = lo + multiple
    best = lo if (n - lo) < (hi - n) else hi
    return max(best, multiple)


def intensity_scale(cfg: DataConfig) -> dict[str, object]:
    """What sets a case's intensities (the percentiles, the voxels they are taken over, where the top
    lands): a net trained on one scale reads another's images wrongly. Saved nets' recipes carry it."""
    return {"percentiles": list(cfg.percentiles), "percentile_region": cfg.percentile_region,
            "percentile_top": float(cfg.percentile_top)}


def check_scale_labels(cfg: DataConfig, loads_labels: bool, what: str) -> None:
    """Refuse ``percentile_region: outside_tumour`` where ``what`` loads no labels: its cases would be
    scaled over the whole brain, silently another scale than the labelled pipelines' of the same config."""
    if cfg.percentile_region == "outside_tumour" and not loads_labels:
        raise ConfigError(f"data.percentile_region outside_tumour scales each case by its labels, and {what} loads "
                          "none: use data.percentile_region brain for it")


def check_roi_divisible(roi: Sequence[int], divisor: int, downsample: int = 1) -> None:
    """Raise :class:`ConfigError` unless every ``roi`` size is divisible by ``divisor * downsample``.

    The pipeline pads/crops to ``roi`` and then downsamples by ``downsample``; the network then
    halves the grid ``log2(divisor)`` times, so ``roi`` must be a multiple of both. The message
    names the nearest valid size rather than silently padding.
    """
    multiple = int(divisor) * int(downsample)
    if multiple < 1:
        raise ConfigError(f"divisor ({divisor}) and data.downsample ({downsample}) must be >= 1")
    if all(int(r) % multiple == 0 for r in roi):
        return
    fixed = tuple(nearest_multiple(int(r), multiple) for r in roi)
    why = str(multiple)
    if downsample > 1:
        why += f" (divisor {divisor} x data.downsample {downsample})" if divisor > 1 else " (data.downsample)"
    raise ConfigError(f"data.roi {_fmt(roi)} not divisible by {why}: use {_fmt(fixed)}")


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


@dataclass
class DataConfig:
    """Where the data is and how volumes become training tensors.

    Intensities end in [-1, 1]: per modality, the ``percentiles`` computed inside the brain
    (non-zero) mask map to -1 and 1 and are clipped; background is -1.
    """

    manifest: str = ""  # MONAI/Decathlon datalist written by `medidiff manifest build`
    root: str = ""  # data root the manifest paths are relative to ("" = the manifest's folder)
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    fold: int | None = 0  # held-out fold for validation; null = train on every labelled case
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm, after resampling
    roi: tuple[int, int, int] = (64, 64, 48)  # final (x, y, z) size in RAS order
    percentiles: tuple[float, float] = (0.5, 99.5)
    # Which brain voxels the percentiles are taken over: "brain" (all), or "outside_tumour" (the
    # brain outside the labelled tumour, so a case's normal-brain level does not move with its
    # tumour: over the whole brain an enhancing tumour holds t1c's top percentile and lowers the rest,
    # -0.28 against +0.22 without one on the anatomy set). Needs labels (label_mode not "none").
    percentile_region: Literal["brain", "outside_tumour"] = "brain"
    # Where the high percentile lands in [-1, 1]; below 1 leaves room for tumours brighter than the
    # reference voxels (with "outside_tumour", t1c's enhancing tumour sits ~1.8 spans above the low one).
    percentile_top: float = 1.0
    crop_foreground: bool = True  # crop to the brain bounding box before pad/crop to roi
    # Integer factor for low-resolution stages, applied after pad/crop to roi: images are
    # block-averaged (area), labels take the block's majority label (ties -> higher label, so
    # thin tumour structures survive). Output size is roi // downsample.
    downsample: int = 1
    label_mode: Literal["none", "labels", "onehot", "regions"] = "labels"
    cache: Literal["none", "memory", "disk"] = "disk"
    cache_dir: str | None = None  # default: <run dir>/cache
    # loader worker processes per GPU process (training) and for filling the memory cache; 0 loads
    # in the training process. Batches and augmentation do not depend on it (seeded per item).
    num_workers: int = 0
    flip_prob: float = 0.0  # random left-right flip (augmentation), train split only
    # Files whose header declares more voxels are refused before decoding (a lying header or a
    # gzip bomb must not exhaust memory); 2**28 is 30 BraTS cases' worth. Not part of the
    # pipeline hash: it changes what is accepted, never what a case becomes.
    max_voxels: int = 2**28

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("modalities must not be empty")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities has duplicates: {self.modalities}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if not -1.0 < self.percentile_top <= 1.0:
            raise ValueError(f"percentile_top must be in (-1, 1], got {self.percentile_top}")
        if self.percentile_region == "outside_tumour" and self.label_mode == "none":
            raise ValueError("percentile_region outside_tumour needs the labels (label_mode is none)")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if any(r <= 0 for r in self.roi):
            raise ValueError(f"roi must be positive, got {self.roi}")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        check_roi_divisible(self.roi, 1, self.downsample)
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.max_voxels < 1:
            raise ValueError(f"max_voxels must be >= 1, got {self.max_voxels}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
