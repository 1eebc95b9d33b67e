"""The one NIfTI writer for everything medidiff outputs.

Outputs carry geometry only: the header is built fresh from the affine (qform and sform set,
codes 'scanner'), never copied from a source patient's header, so no acquisition fields, dates or
free-text descriptions leak into synthetic data. Each file is stamped as synthetic in the header
``descrip`` and ``intent_name`` fields and in a NIfTI comment extension that holds the provenance
JSON, and gets a ``.json`` sidecar with the same provenance.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medidiff import __version__
from medidiff.files import atomic_path, file_sha256, write_text_atomic

__all__ = ["SYNTHETIC_DESCRIP", "write_nifti", "sidecar_path", "read_provenance", "source_record"]

SYNTHETIC_DESCRIP = f"SYNTHETIC medidiff {__version__}: not patient data"
_NIFTI_COMMENT_CODE = 6  # NIfTI-1 extension code for free-text comments


def source_record(case_id: str, manifest: str | Path, *, fold: int | None = None, keep_ids: bool = False
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """How a synthetic case names a real case it was made from (a mask, a reference grid).

    Returns (public, sidecar_only). The public record holds no identifier: the case id as
    ``case_id_sha256`` (sha256 of the UTF-8 id, 16 hex digits; unsalted, so whoever holds the
    manifest can match it, e.g. the evaluation refusing test-fold masks; a pseudonym, not
    anonymisation, for public data sets whose ids are listed), the manifest as ``manifest_sha256``
    (of its bytes, 16 hex digits) and the ``fold``. With ``keep_ids`` the plain case id and the
    manifest path go in ``sidecar_only``, which :func:`write_nifti` keeps out of headers.
    """
    import hashlib

    stat = Path(manifest).stat()
    digest = _file_digest16(str(manifest), stat.st_mtime_ns, stat.st_size)
    public: dict[str, Any] = {"case_id_sha256": hashlib.sha256(case_id.encode()).hexdigest()[:16],
                              "manifest_sha256": digest}
    if fold is not None:
        public["fold"] = int(fold)
    private = {"case_id": case_id, "manifest": str(manifest)} if keep_ids else {}
    return public, private


@functools.lru_cache(maxsize=8)
def _file_digest16(path: str, mtime_ns: int, size: int) -> str:
    # one read per manifest version: a run records the same manifest for every case
    return file_sha256(path)[:16]


def sidecar_path(path: str | Path) -> Path:
    """``case/t1n.nii.gz`` -> ``case/t1n.json``."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    provenance: Mapping[str, Any] | None = None,
    dtype: np.dtype | type | None = None,
    synthetic: bool = True,
    sidecar: bool = True,
    sidecar_only: Mapping[str, Any] | None = None,
    is_label: bool = False,
) -> Path:
    """Write a 3D volume as NIfTI-1 with a clean header and a provenance sidecar.

    Args:
        path: ``.nii`` or ``.nii.gz`` output path; parent folders are created.
        data: (X, Y, Z) array in the voxel order that ``affine`` maps to world (RAS+ mm).
        affine: 4x4 voxel-to-world matrix; spacing is taken from it.
        provenance: JSON-serialisable facts (model, config hash, seed, sampler, steps...).
        dtype: on-disk dtype; default float32 for floats, uint8/int16 for integer labels.
        synthetic: stamp the header as synthetic (default; phantoms and generated cases are).
        sidecar: also write ``<name>.json`` next to the image.
        sidecar_only: facts for the sidecar but never the header (source case ids and paths when
            the user asked to keep them: a header travels with the file, a sidecar can be dropped).
        is_label: a label map: the NIfTI intent is set to 'label' (code 1002) so viewers show a
            lookup table instead of a grey ramp.

    The file and its sidecar are written to unique temporary names and renamed
    (:func:`medidiff.files.atomic_path`), so an interrupted write never leaves a truncated volume
    under the final name, and they get the user's umask mode.
    """
    path = Path(path)
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ValueError(f"{path}: write_nifti expects a 3D volume, got shape {arr.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: affine must be a finite 4x4 matrix, got {affine!r}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path}: affine is singular: {affine.tolist()}")
    if dtype is None:
        if np.issubdtype(arr.dtype, np.floating):
            dtype = np.float32
        elif np.issubdtype(arr.dtype, np.bool_):
            dtype = np.uint8
        else:
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
            dtype = np.uint8 if lo >= 0 and hi <= 255 else np.int16
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: refusing to write NaN/Inf voxels")
    target = np.dtype(dtype)
    if np.issubdtype(target, np.integer) and arr.size:
        info = np.iinfo(target)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"{path}: values [{lo}, {hi}] do not fit the on-disk dtype {target}")
    arr = arr.astype(target, copy=False)

    header = nib.Nifti1Header()  # fresh: nothing inherited from any source file
    img = nib.Nifti1Image(arr, affine, header=header)
    img.set_data_dtype(arr.dtype)  # a fresh header says float32; labels must stay integers
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    prov = {"medidiff_version": __version__, "synthetic": bool(synthetic), **dict(provenance or {})}
    if is_label:
        img.header.set_intent("label", name="synthetic" if synthetic else "")
    if synthetic:
        img.header["descrip"] = SYNTHETIC_DESCRIP.encode()[:79]
        img.header["intent_name"] = b"synthetic"
        blob = json.dumps(prov, sort_keys=True, default=str).encode()
        img.header.extensions.append(nib.nifti1.Nifti1Extension(_NIFTI_COMMENT_CODE, blob))
    if np.issubdtype(arr.dtype, np.floating) and arr.size:
        img.header["cal_min"], img.header["cal_max"] = float(arr.min()), float(arr.max())

    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    if sidecar:
        side = {"file": path.name, **prov, **dict(sidecar_only or {})}
        write_text_atomic(sidecar_path(path), json.dumps(side, indent=2, sort_keys=True, default=str))
    return path


def read_provenance(path: str | Path) -> dict[str, Any]:
    """Provenance stored in a medidiff NIfTI's comment extension ({} if none)."""
    img = nib.load(str(path))
    for ext in img.header.extensions:
        if ext.get_code() == _NIFTI_COMMENT_CODE:
            try:
                return json.loads(ext.get_content())
            except (ValueError, UnicodeDecodeError):
                continue
    return {}
