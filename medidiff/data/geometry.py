"""Grids: where a processed (or generated) volume lives in the world, and the way back.

The data pipeline moves every case to a RAS grid at ``cfg.spacing``, crops to the brain and
pads/crops to ``cfg.roi``; the MetaTensor's ``.affine`` records the result (voxel -> world mm).
A generated volume lives on such a processed grid. To hand it out as a file that overlays a real
case (or the BraTS/SRI24 grid), resample it onto that reference grid:

    affine, shape = processed_geometry(reference_item, cfg)      # grid the model saw
    ref_affine, ref_shape = reference_geometry(reference_t1n)    # grid of the original file
    out = to_reference_grid(sample, affine, ref_affine, ref_shape, mode="bilinear", background=-1)

Orientation flips, resampling, crop and pad are all expressed by the two affines, so one
resampling undoes them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE
from medidiff.data.checks import DEFAULT_MAX_VOXELS, nifti_header
from medidiff.data.config import DataConfig
from medidiff.data.transforms import Pipeline, deterministic_transforms
from medidiff.errors import DataError

__all__ = ["reference_geometry", "brats_geometry", "processed_geometry", "to_reference_grid"]


def reference_geometry(path: str | Path, *, max_voxels: int = DEFAULT_MAX_VOXELS
                       ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(4x4 float64 affine, (X, Y, Z) shape) of a 3D NIfTI file, from its header only (after the
    shared header checks of :func:`medidiff.data.checks.nifti_header`)."""
    p = Path(path)
    img = nifti_header(p, max_voxels=max_voxels)
    if len(img.shape) != 3:
        raise DataError(p, f"expected a 3D volume for a reference grid, got shape {tuple(img.shape)}")
    return np.asarray(img.affine, dtype=np.float64), tuple(int(s) for s in img.shape)  # type: ignore[return-value]


def brats_geometry() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The BraTS/SRI24 grid: 240 x 240 x 155 at 1 mm with the usual LPS-reported affine."""
    return BRATS_AFFINE.copy(), tuple(BRATS_SHAPE)  # type: ignore[return-value]


def processed_geometry(
    item: Mapping[str, Any],
    cfg: DataConfig,
    *,
    divisor: int = 1,
    label_map: Mapping[Any, Any] | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and spatial shape of the grid the pipeline puts ``item`` on.

    Runs the deterministic transforms on the item's images (no label needed) and reads the
    output MetaTensor's affine: with ``crop_foreground`` the grid depends on this case's brain
    box, so it cannot be computed from the header alone.
    """
    pipeline = Pipeline(deterministic_transforms(cfg, divisor=divisor, label_map=label_map, with_label=False))
    out = pipeline({k: v for k, v in item.items() if k != "label"})
    image = out["image"]
    if not isinstance(image, MetaTensor):
        raise TypeError("the pipeline returned a plain tensor; MetaTensor tracking must be on")
    affine = image.affine.detach().cpu().numpy().astype(np.float64)
    return affine, tuple(int(s) for s in image.shape[1:])  # type: ignore[return-value]


def to_reference_grid(
    volume: np.ndarray | torch.Tensor,
    volume_affine: np.ndarray | torch.Tensor,
    ref_affine: np.ndarray | torch.Tensor,
    ref_shape: Sequence[int],
    mode: Literal["bilinear", "nearest"] = "bilinear",
    *,
    background: float = 0.0,
) -> np.ndarray:
    """Resample ``volume`` (on the grid ``volume_affine``) onto the grid (``ref_affine``, ``ref_shape``).

    Args:
        volume: (X, Y, Z) or (C, X, Y, Z) on the processed grid.
        volume_affine: its 4x4 voxel -> world affine (MetaTensor ``.affine`` after the pipeline).
        ref_affine, ref_shape: the target grid, e.g. from :func:`reference_geometry`.
        mode: ``bilinear`` for intensities, ``nearest`` for label maps (values are kept exactly).
        background: value for reference voxels outside the processed grid: -1 for pipeline
            images (their background), 0 for labels.

    Returns:
        ``np.ndarray`` of shape ``ref_shape`` (or (C, *ref_shape)); float32 for bilinear, the
        input dtype for nearest.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    arr = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if arr.ndim not in (3, 4):
        raise ValueError(f"volume must be (X, Y, Z) or (C, X, Y, Z), got shape {arr.shape}")
    ref_shape = tuple(int(s) for s in ref_shape)
    if len(ref_shape) != 3:
        raise ValueError(f"ref_shape must have 3 sizes, got {ref_shape}")
    src = torch.as_tensor(np.asarray(volume_affine, dtype=np.float64))
    dst = torch.as_tensor(np.asarray(ref_affine, dtype=np.float64))
    for name, a in (("volume_affine", src), ("ref_affine", dst)):
        if a.shape != (4, 4) or not bool(torch.isfinite(a).all()):
            raise ValueError(f"{name} must be a finite 4x4 matrix, got {a.tolist()}")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    x = x[None] if arr.ndim == 3 else x  # (C, X, Y, Z)
    # Resample (x - background) with zero padding so voxels outside the processed grid get
    # `background` exactly: SpatialResample only pads with zeros, border or reflection.
    x = MetaTensor(x - background, affine=src)
    out = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float64)(
        x, dst_affine=dst, spatial_size=ref_shape
    )
    res = out.detach().cpu().numpy() + background  # (C, *ref_shape)
    res = res[0] if arr.ndim == 3 else res
    if mode == "nearest":
        # Nearest copies source values; rint only removes float64 round-off before the cast.
        return np.rint(res).astype(arr.dtype) if not np.issubdtype(arr.dtype, np.floating) else res.astype(np.float32)
    return res.astype(np.float32)
