"""Label maps on a model's grid: the conditions of mask-conditioned generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.data.brats import regions_to_labels
from medidiff.data.config import DataConfig
from medidiff.data.transforms import build_transforms
from medidiff.io import write_nifti

__all__ = ["model_grid_labels", "write_model_grid_masks"]


def model_grid_labels(items: Sequence[Mapping[str, Any]], data: DataConfig, *,
                      label_map: Mapping[int, int] | None = None) -> list[np.ndarray]:
    """Label maps {0,1,2,3} of labelled cases on the model grid (the experiment's deterministic data
    pipeline with ``data.label_mode: regions``): (X, Y, Z) uint8 each."""
    if data.label_mode != "regions":
        raise ValueError(f"data.label_mode must be 'regions' for model-grid labels, got {data.label_mode!r}")
    to_grid = build_transforms(data, train=False, label_map=dict(label_map or {}))
    return [regions_to_labels(to_grid(dict(item))["label"].numpy()) for item in items]  # (3, X, Y, Z) -> labels


def write_model_grid_masks(items: Sequence[Mapping[str, Any]], data: DataConfig, out_dir: str | Path, *,
                           label_map: Mapping[int, int] | None = None) -> list[Path]:
    """Write :func:`model_grid_labels` as ``OUT/<case_id>.nii.gz`` on the model grid: what
    ``medidiff generate --masks OUT`` reads."""
    from medidiff.generation import place_in_grid

    from medidiff.data.transforms import output_spacing

    spacing = list(output_spacing(data))  # the model grid's voxel size
    written = []
    for item, label in zip(items, model_grid_labels(items, data, label_map=label_map)):
        label, affine = place_in_grid(label, spacing, "native", label=True)
        written.append(write_nifti(Path(out_dir) / f"{item['case_id']}.nii.gz", label, affine, synthetic=False,
                                   provenance={"source_case": item["case_id"]}))
    return written
