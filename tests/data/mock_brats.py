"""Tiny mock BraTS releases on disk, for tests (ours and other families').

``make_brats2023(root, 3)`` writes::

    root/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz
    root/BraTS-GLI-00001-000/...

``make_brats2021(root, 3)`` writes::

    root/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz

Volumes are small (default 12 x 12 x 8), int16 images with a bright ellipsoid "brain" on a zero
background and a small tumour in the label map, written with the SRI24 affine that real BraTS
files carry (``medidiff.data.brats.BRATS_AFFINE``). Labels follow each release: {0, 1, 2, 3}
for 2023+, {0, 1, 2, 4} for 2021. Everything is deterministic in the case index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medidiff.data.brats import BRATS_AFFINE

__all__ = [
    "make_brats2023",
    "make_brats2021",
    "brats2023_case_id",
    "brats2021_case_id",
    "mock_volume",
    "mock_label",
    "save_nifti",
]

_SUFFIXES_2023 = ("t1n", "t1c", "t2w", "t2f")
_SUFFIXES_2021 = ("t1", "t1ce", "t2", "flair")


def brats2023_case_id(index: int, cohort: str = "GLI", timepoint: int = 0) -> str:
    return f"BraTS-{cohort}-{index:05d}-{timepoint:03d}"


def brats2021_case_id(index: int) -> str:
    return f"BraTS2021_{index:05d}"


def save_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` with plain nibabel (mock *source* data, so no medidiff provenance stamp)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, BRATS_AFFINE if affine is None else affine), str(path))
    return path


def _ellipsoid(shape: Sequence[int], radii: Sequence[float], centre: Sequence[float]) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return r2 <= 1.0


def mock_volume(shape: Sequence[int], seed: int) -> np.ndarray:
    """int16 "brain": noisy ellipsoid of intensity ~500-1000 on a zero background."""
    rng = np.random.default_rng(seed)
    brain = _ellipsoid(shape, [0.4 * n for n in shape], [(n - 1) / 2 for n in shape])
    values = rng.integers(500, 1000, size=tuple(shape))
    return np.where(brain, values, 0).astype(np.int16)


def mock_label(shape: Sequence[int], seed: int, et_value: int = 3) -> np.ndarray:
    """uint8 tumour: oedema (2) shell, core (1), enhancing (``et_value``) centre."""
    rng = np.random.default_rng(seed + 10_000)
    centre = [(n - 1) / 2 + rng.uniform(-1, 1) for n in shape]
    label = np.zeros(tuple(shape), dtype=np.uint8)
    label[_ellipsoid(shape, [0.25 * n for n in shape], centre)] = 2
    label[_ellipsoid(shape, [0.15 * n for n in shape], centre)] = 1
    label[_ellipsoid(shape, [0.08 * n for n in shape], centre)] = et_value
    return label


def _make_case(
    case_dir: Path,
    case_id: str,
    sep: str,
    suffixes: Sequence[str],
    shape: Sequence[int],
    seed: int,
    with_label: bool,
    et_value: int,
) -> None:
    for k, suffix in enumerate(suffixes):
        save_nifti(case_dir / f"{case_id}{sep}{suffix}.nii.gz", mock_volume(shape, seed * 10 + k))
    if with_label:
        save_nifti(case_dir / f"{case_id}{sep}seg.nii.gz", mock_label(shape, seed, et_value))


def make_brats2023(
    root: str | Path,
    n_cases: int,
    shape: Sequence[int] = (12, 12, 8),
    with_labels: bool = True,
    *,
    cohort: str = "GLI",
    start: int = 0,
    timepoints: int = 1,
) -> Path:
    """Write ``n_cases`` BraTS 2023+-style cases (``cohort`` GLI, MEN, MET, PED, SSA...).

    ``timepoints > 1`` writes several ``-000``, ``-001``... cases per subject, like the
    longitudinal GLI releases. ``start`` offsets the case numbers so a second call can add cases.
    """
    root = Path(root)
    for i in range(start, start + n_cases):
        for t in range(timepoints):
            case_id = brats2023_case_id(i, cohort, t)
            _make_case(root / case_id, case_id, "-", _SUFFIXES_2023, shape, i * 7 + t, with_labels, 3)
    return root


def make_brats2021(
    root: str | Path,
    n_cases: int,
    shape: Sequence[int] = (12, 12, 8),
    with_labels: bool = True,
    *,
    start: int = 0,
) -> Path:
    """Write ``n_cases`` BraTS 2021-style cases (t1, t1ce, t2, flair; enhancing tumour = 4)."""
    root = Path(root)
    for i in range(start, start + n_cases):
        case_id = brats2021_case_id(i)
        _make_case(root / case_id, case_id, "_", _SUFFIXES_2021, shape, i * 7, with_labels, 4)
    return root
