"""Helpers for evaluation tests: phantom cases written in the `medidiff generate` layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medidiff.data.brats import MODALITIES
from medidiff.data.phantom import PhantomSpec, brats_affine, case_seed, make_phantom_case
from medidiff.io import write_nifti


def to_unit_range(vol: np.ndarray) -> np.ndarray:
    """Skull-stripped phantom intensities -> [0, 1] with background exactly 0 (like generate's (x+1)/2)."""
    brain = vol > 0
    if not brain.any():
        return np.zeros_like(vol, dtype=np.float32)
    hi = np.percentile(vol[brain], 99.5)
    return np.clip(vol / hi, 0.0, 1.0).astype(np.float32) * brain


def write_generated_case(out: Path, index: int, images: dict[str, np.ndarray], seg: np.ndarray | None,
                         affine: np.ndarray) -> Path:
    """``out/case_XXXX/{modality}.nii.gz`` (+ ``seg.nii.gz``) as `medidiff generate` writes them."""
    case = Path(out) / f"case_{index:04d}"
    for m, vol in images.items():
        write_nifti(case / f"{m}.nii.gz", to_unit_range(vol), affine, provenance={"case": case.name})
    if seg is not None:
        write_nifti(case / "seg.nii.gz", seg.astype(np.uint8), affine, provenance={"case": case.name})
    return case


def write_synthetic_phantoms(out: Path, cases: int, shape: tuple[int, int, int], seed: int, *,
                             start: int = 0, tumour_fraction: float = 1.0) -> list[Path]:
    """Fresh phantom heads (seed ``seed``) standing in for a model's output."""
    spec = PhantomSpec(shape=shape, tumour_fraction=tumour_fraction)
    folders = []
    for i in range(cases):
        c = make_phantom_case(case_seed(seed, i), spec=spec)
        folders.append(write_generated_case(out, start + i, c.images, c.seg, brats_affine(shape)))
    return folders


def copy_real_case(out: Path, index: int, real_case_dir: Path) -> Path:
    """Plant a real BraTS-2023-layout phantom case into the generate layout (a memorised copy)."""
    cid = real_case_dir.name
    images, affine = {}, None
    for m in MODALITIES:
        img = nib.load(real_case_dir / f"{cid}-{m}.nii.gz")
        images[m] = np.asarray(img.dataobj, dtype=np.float32)
        affine = img.affine
    seg = np.asarray(nib.load(real_case_dir / f"{cid}-seg.nii.gz").dataobj)
    return write_generated_case(out, index, images, seg, affine)


def phantom_tissue_map(tissue: np.ndarray) -> np.ndarray:
    """The phantom's anatomy codes -> the anatomy data set's tissue map (0 bg, 1 CSF, 2 GM, 3 WM);
    deep grey nuclei count as GM, tumour, skull and scalp as 0 (the tumour lives in seg)."""
    from medidiff.data.phantom import CSF, DEEP_GM, GM, WM

    out = np.zeros(tissue.shape, np.uint8)
    out[tissue == CSF] = 1
    out[(tissue == GM) | (tissue == DEEP_GM)] = 2
    out[tissue == WM] = 3
    return out


def write_tissue_maps(root: Path, cases: int, shape: tuple[int, int, int], seed: int, *,
                      tumour_fraction: float = 1.0) -> None:
    """``CASE/CASE-tissue.nii.gz`` beside each case of ``write_phantom_dataset(root, cases, shape, seed)``."""
    from medidiff.data.phantom import case_id

    spec = PhantomSpec(shape=shape, tumour_fraction=tumour_fraction)
    for i in range(cases):
        c = make_phantom_case(case_seed(seed, i), spec=spec)
        cid = case_id(i)
        nib.save(nib.Nifti1Image(phantom_tissue_map(c.tissue), c.affine), str(Path(root) / cid / f"{cid}-tissue.nii.gz"))
