"""Configuration of the data pipeline (the ``data:`` section of an experiment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medidiff.data.brats import MODALITIES


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
    crop_foreground: bool = True  # crop to the brain bounding box before pad/crop to roi
    downsample: int = 1  # integer factor for low-resolution stages (area averaging)
    label_mode: Literal["none", "labels", "onehot", "regions"] = "labels"
    cache: Literal["none", "memory", "disk"] = "disk"
    cache_dir: str | None = None  # default: <run dir>/cache
    num_workers: int = 0
    flip_prob: float = 0.0  # random left-right flip (augmentation), train split only

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("modalities must not be empty")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities has duplicates: {self.modalities}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if any(r <= 0 for r in self.roi):
            raise ValueError(f"roi must be positive, got {self.roi}")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
