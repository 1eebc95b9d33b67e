"""Label maps on a model's grid: the conditions of mask-conditioned generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medidiff.data.config import DataConfig
from medidiff.data.transforms import build_transforms
from medidiff.io import write_nifti

__all__ = ["write_model_grid_masks"]


def write_model_grid_masks(items: Sequence[Mapping[str, Any]], data: DataConfig, out_dir: str | Path, *,
                           label_map: Mapping[int, int] | None = None) -> list[Path]:
    """Run labelled cases through the experiment's (deterministic) data pipeline and write their
    label maps {0,1,2,3} on the model grid as ``OUT/<case_id>.nii.gz``: what
    ``medidiff generate --masks OUT`` reads. ``data.label_mode`` must be ``regions``."""
    from medidiff.generation import place_in_grid, regions_to_labels

    if data.label_mode != "regions":
        raise ValueError(f"data.label_mode must be 'regions' for mask export, got {data.label_mode!r}")
    to_grid = build_transforms(data, train=False, label_map=dict(label_map or {}))
    spacing = [s * data.downsample for s in data.spacing]  # the model grid's voxel size
    written = []
    for item in items:
        label = regions_to_labels(to_grid(dict(item))["label"].numpy())  # (3, X, Y, Z) WT/TC/ET -> {0..3}
        label, affine = place_in_grid(label, spacing, "native", label=True)
        written.append(write_nifti(Path(out_dir) / f"{item['case_id']}.nii.gz", label, affine, synthetic=False,
                                   provenance={"source_case": item["case_id"]}))
    return written
