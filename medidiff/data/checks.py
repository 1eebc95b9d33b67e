"""The one set of file checks: ``manifest validate`` and the data pipeline call these, nothing else.

Each check raises :class:`~medidiff.errors.DataError` naming the file, which the CLI prints as one
line with exit status 2; ``validate`` turns the same errors into its problem list. What is
checked, and why here:

* paths: resolved (symlinks included) and confined to the data root; a symlink loop is an error,
  not a ``RuntimeError`` traceback (:func:`confined_path`);
* headers, before any voxel is decoded (:func:`nifti_header`): readable NIfTI; declared voxels at
  most ``max_voxels`` (a 30000^3 header, or a gzip bomb, is refused before decoding); a finite,
  non-singular affine (the pipeline's resampling divides by it);
* the whole file (:func:`read_volume`): decodes completely (truncated or corrupt ``.nii.gz``
  fail only when the voxels are read); ``.gz`` files are read to their end, so gzip checks its
  CRC, but never more than the header declares (plus slack for extensions);
* values (:func:`check_image_values`, :func:`label_problem`): no NaN/Inf, not all zero (the
  percentile scaling has no brain to scale); label values inside their convention, with the
  hint that fits the values found (2021's 4, 2024's post-treatment 4 = resection cavity...).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.errors import DataError

__all__ = ["DEFAULT_MAX_VOXELS", "confined_path", "nifti_header", "read_volume", "check_image_values",
           "label_values", "label_problem"]

# 2**28 voxels = 1 GiB as float32: 30x a BraTS case (240x240x155 = 8.9M voxels), far below what
# would exhaust a node's memory when a header lies. Raise it with data.max_voxels (whose default
# this is; a test keeps the two equal).
DEFAULT_MAX_VOXELS = 2**28
_GZIP_SLACK = 1 << 20  # bytes past the declared image a .nii.gz may hold (extensions, padding)


def confined_path(path: str | Path, root: str | Path) -> Path:
    """``path`` (absolute, or relative to ``root``) with symlinks resolved; DataError when it
    leads outside ``root`` or through a symlink loop."""
    root = Path(root).absolute()
    p = Path(path) if os.path.isabs(path) else root / path
    try:
        real = p.resolve(strict=False)
        real_root = root.resolve(strict=False)
    except (RuntimeError, OSError) as exc:  # Python < 3.13 raises RuntimeError on a loop
        raise DataError(p, f"symlink loop or unresolvable path ({exc})") from None
    if os.path.islink(p) or p.exists():
        try:  # a loop surfaces only when the link is followed
            os.stat(p)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                raise DataError(p, "symlink loop") from None
    try:
        real.relative_to(real_root)
    except ValueError:
        raise DataError(p, f"resolves to {real}, outside the data root {real_root} (a symlink or '..' leads out)"
                        ) from None
    return p


def nifti_header(path: str | Path, *, max_voxels: int = DEFAULT_MAX_VOXELS) -> Any:
    """The nibabel image of ``path`` after header-only checks (nothing decoded yet)."""
    import nibabel as nib

    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    if not p.is_file():
        raise DataError(p, "not a regular file")
    try:
        img = nib.load(str(p))
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for broken headers
        raise DataError(p, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    shape = tuple(int(s) for s in img.shape)
    n = int(np.prod(shape, dtype=np.float64)) if shape else 0
    if n > max_voxels:
        raise DataError(p, f"header declares {'x'.join(map(str, shape))} = {n:,} voxels, over the limit of "
                           f"{max_voxels:,} (data.max_voxels / --max-voxels): refusing to decode it")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise DataError(p, f"affine has NaN/Inf entries: {np.round(affine, 4).tolist()}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(p, f"affine is singular (zero voxel size or collapsed axes): {np.round(affine, 4).tolist()}")
    return img


def _check_gzip_stream(path: Path, limit: int) -> None:
    """Read a .gz file to its end (gzip then checks CRC and length), refusing more than ``limit``
    decompressed bytes. nibabel reads only the bytes the header asks for, so a file cut inside
    the gzip trailer, or with flipped data bits, loads "fine" through nibabel alone."""
    import gzip

    total = 0
    with gzip.open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            total += len(block)
            if total > limit:
                raise DataError(path, f"gzip stream decompresses to more than the {limit:,} bytes its header "
                                      "declares: refusing it (corrupt, or a gzip bomb)")


def read_volume(path: str | Path, *, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """(voxels as stored, float64 affine) of a NIfTI file, every check above applied."""
    p = Path(path)
    img = nifti_header(p, max_voxels=max_voxels)
    try:
        if p.name.endswith(".gz"):
            declared = int(img.header.get("vox_offset", 0)) + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
            _check_gzip_stream(p, declared + _GZIP_SLACK)
        data = np.asanyarray(img.dataobj)  # reads every voxel: truncation shows up here
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated gz: EOFError, zlib.error, OSError...
        raise DataError(p, f"unreadable: truncated or corrupt ({type(exc).__name__}: {exc})") from None
    return data, np.asarray(img.affine, dtype=np.float64)


def check_image_values(data: Any, name: object) -> None:
    """DataError unless the image ``data`` (array or CPU tensor) is finite and not all zero."""
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(name, f"{n_nan} NaN and {int(bad.sum()) - n_nan} Inf voxels (first at voxel {first})")
    if not arr.any():
        raise DataError(name, "volume is all zeros: no brain voxels to scale")


def label_values(data: Any, name: object) -> list[int]:
    """The distinct values of a label map (array or CPU tensor); DataError for NaN/Inf or
    non-integer voxels (a label map resampled with linear interpolation)."""
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise DataError(name, f"label map has {int(arr.size - finite.sum())} NaN/Inf voxel(s)")
        frac = arr != np.round(arr)
        if frac.any():
            examples = np.unique(arr[frac])[:5].tolist()
            raise DataError(name, f"label map has {int(frac.sum())} non-integer voxel(s), e.g. {examples} "
                                  "(resampled with linear interpolation? labels need nearest neighbour)")
    return np.unique(arr).astype(np.int64).tolist()


def label_problem(values: Collection[int], label_map: Mapping[int, int], allowed: Collection[int], *,
                  fix_2021: str = "record label_map {4: 3} in the manifest") -> str | None:
    """Why a label file with raw ``values`` does not fit (None if it does), with the hint that fits.

    ``label_map`` is the manifest's map to the medidiff convention (2021 data: ``{4: 3}``),
    ``allowed`` the values allowed after it; ``fix_2021`` how the caller's input declares 2021 data.
    """
    raw = sorted(int(v) for v in values)
    allowed = {int(v) for v in allowed}
    outside = [v for v in raw if label_map.get(v, v) not in allowed]
    declared_2021 = label_map.get(4) == 3
    if declared_2021 and 3 in raw:
        # 2021 leaves 3 unused; a 3 in data declared 2021 means the data is 2023+ (ET = 3) and
        # the map would merge nothing but hide the mismatch.
        return (f"label value 3 in data declared BraTS 2021 (label_map {{4: 3}}; 2021 leaves 3 unused): file has "
                f"{raw}. BraTS 2023+ data (ET = 3) needs no map; 3 and 4 together are BraTS 2024 post-treatment "
                "labels (4 = resection cavity), which medidiff does not model")
    if not outside:
        return None
    mapped = f" after label_map {dict(label_map)}" if label_map else ""
    msg = f"label values {outside} outside the allowed set {sorted(allowed)}{mapped} (file has {raw})"
    if outside == [4] and 3 not in raw and not label_map:
        # 4 without 3 is either 2021 (ET = 4) or 2024 post-treatment without enhancement
        # (4 = resection cavity): only the source can tell, so name both.
        msg += (f": BraTS 2021 writes enhancing tumour as 4 ({fix_2021}); in BraTS 2024 post-treatment "
                "data 4 is a resection cavity, which medidiff does not model")
    elif 4 in outside and 3 in raw and not label_map:
        msg += (": labels 3 and 4 together look like BraTS 2024 post-treatment data (4 = resection cavity), "
                "which medidiff does not model; mapping 4 to 3 would call the cavity enhancing tumour. Remove "
                "the cavity (label_map {4: 0}) only if that is what you mean")
    return msg
