"""MONAI dictionary transforms: NIfTI files -> (C, X, Y, Z) tensors in [-1, 1] on a RAS grid.

Input items are manifest dicts::

    {"image": [t1n, t1c, t2w, t2f paths], "label": seg path (optional), "case_id": str,
     "fold": int, "label_map": {"4": 3} (optional), "modalities": [...] (optional)}

The pipeline, in order (all deterministic steps first, so Cache/PersistentDataset can store
their output; MONAI caches up to the first random transform):

1. ``SelectModalitiesd`` keeps the ``cfg.modalities`` paths, in that order (and the label path
   is dropped unread when ``label_mode`` is ``none`` or ``with_label=False``).
2. ``CheckFilesd`` reads headers only: every file exists, is readable, declares at most
   ``cfg.max_voxels`` voxels, has a finite non-singular affine, is 3D, and matches the first
   modality's grid. Catches MSD-style 4D files before MONAI's stacking error hides the name.
3. ``LoadVolumesd`` (MONAI's LoadImaged, NibabelReader; modalities stacked as channels; a
   truncated file is named) + ``EnsureChannelFirstd``.
4. ``CheckValuesd`` rejects NaN/Inf voxels, empty modalities and raw label values outside the
   manifest's convention (with the hint that fits), naming the file; then ``MapLabelsd``
   applies the label map (BraTS 2021: 4 -> 3). Steps 2-4 are :mod:`medidiff.data.checks`, the
   checks ``manifest validate`` runs too.
5. ``Orientationd`` to RAS, ``Spacingd`` to ``cfg.spacing`` (bilinear images, nearest labels).
6. ``CropForegroundd`` to the brain box (any modality non-zero), if ``cfg.crop_foreground``.
   Cropping before scaling changes nothing: the percentiles only see brain voxels.
   ``WarnBrainCropd`` then warns once when step 8's crop would remove brain voxels.
7. ``ScaleBrainPercentilesd``: per modality, percentiles inside the brain mask (or, with
   ``cfg.percentile_region: outside_tumour``, the brain outside the labelled tumour) -> [-1,
   ``cfg.percentile_top``], clipped to [-1, 1]; background -1.
8. ``ResizeWithPadOrCropd`` (centred) to ``cfg.roi``: images padded with -1, labels with 0.
9. ``BlockDownsampled`` by ``cfg.downsample``: area averaging for images, block majority for
   labels (ties -> the higher label, so thin tumour structures survive).
10. ``LabelToChannelsd`` by ``cfg.label_mode``.
--- cache boundary ---
11. ``RandFlipd`` along x (left-right), train only, ``cfg.flip_prob``; ``EnsureTyped``.

Output: ``image`` float32 (C, *roi // downsample), C = len(cfg.modalities); ``label`` per mode:
``labels`` int64 (1, ...), ``onehot`` uint8 (4, ...), ``regions`` uint8 (3, ...) as WT/TC/ET in {0, 1}
(a quarter of float32's bytes in caches, loader workers and host-to-device copies; consumers take
``.float()`` or ``> 0``).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, NibabelReader
from monai.transforms import (
    Compose,
    CropForegroundd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    RandFlipd,
    ResizeWithPadOrCropd,
    Spacingd,
)
from monai.utils import convert_to_dst_type

from medidiff.data.brain import written_brain_mask
from medidiff.data.brats import LABEL_VALUES, MODALITIES, REGIONS
from medidiff.data.checks import (
    DEFAULT_MAX_VOXELS,
    check_image_values,
    label_problem,
    label_values,
    nifti_header,
    read_volume,
)
from medidiff.data.config import DataConfig, check_roi_divisible
from medidiff.data.labels import block_majority_labels
from medidiff.errors import DataError, MedidiffError

__all__ = [
    "LabelMode",
    "SOURCE_FILES_KEY",
    "SelectModalitiesd",
    "CheckFilesd",
    "MapLabelsd",
    "CheckValuesd",
    "ScaleBrainPercentilesd",
    "BlockDownsampled",
    "LabelToChannelsd",
    "PlainTensorsd",
    "brain_mask",
    "parse_label_map",
    "output_shape",
    "output_spacing",
    "label_channels",
    "deterministic_transforms",
    "random_transforms",
    "build_transforms",
    "Pipeline",
    "medidiff_error_of",
]

LabelMode = Literal["none", "labels", "onehot", "regions"]

# Item key where CheckFilesd records the source paths of each key, so later checks can name the
# exact file of a bad channel (after stacking, MetaTensor meta only names the first file).
SOURCE_FILES_KEY = "source_files"

IMAGE, LABEL = "image", "label"

# Bump when the deterministic transforms change meaning, so old disk caches are not reused.
PIPELINE_VERSION = 1


def _case(data: Mapping[Hashable, Any]) -> str:
    return str(data.get("case_id", "<case without case_id>"))


def _files_of(data: Mapping[Hashable, Any], key: Hashable) -> list[str]:
    """Source file(s) of ``key``: recorded by CheckFilesd, else the MetaTensor's filename."""
    rec = data.get(SOURCE_FILES_KEY, {})
    if isinstance(rec, Mapping) and key in rec:
        files = rec[key]
        return [str(f) for f in files] if isinstance(files, (list, tuple)) else [str(files)]
    value = data.get(key)
    name = value.meta.get("filename_or_obj", None) if isinstance(value, MetaTensor) else None
    return [str(name)] if name else [f"{_case(data)}[{key}]"]


def parse_label_map(label_map: Mapping[Any, Any] | None) -> dict[int, int]:
    """``{"4": 3}`` (JSON keys are strings) -> ``{4: 3}``; rejects non-integer entries."""
    out: dict[int, int] = {}
    for k, v in (label_map or {}).items():
        try:
            ki, vi = int(k), int(v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label_map entries must be integers, got {k!r}: {v!r}") from exc
        if float(k) != ki or float(v) != vi:
            raise ValueError(f"label_map entries must be integers, got {k!r}: {v!r}")
        out[ki] = vi
    return out


def brain_mask(image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """(C, X, Y, Z) -> (1, X, Y, Z) bool: voxels where any modality is non-zero.

    BraTS is skull-stripped with exact zeros outside the brain, and bilinear resampling keeps
    those zeros exact, so "non-zero in any modality" is the brain.
    """
    if isinstance(image, torch.Tensor):
        return (image != 0).any(dim=0, keepdim=True)
    return np.any(np.asarray(image) != 0, axis=0, keepdims=True)


def _with_data(result: torch.Tensor, like: torch.Tensor, affine: torch.Tensor | None = None) -> torch.Tensor:
    """Wrap ``result`` like ``like`` (MetaTensor meta kept), optionally with a new affine."""
    out = convert_to_dst_type(result, like, dtype=result.dtype)[0]
    if affine is not None and isinstance(out, MetaTensor):
        out.affine = affine
    return out


# --------------------------------------------------------------------------------------------
# Custom dictionary transforms
# --------------------------------------------------------------------------------------------


class SelectModalitiesd(MapTransform):
    """Keep the paths of ``modalities`` (in that order) from ``data[key]``.

    The item's image list is in ``data["modalities"]`` order if the item says so, else in
    :data:`~medidiff.data.brats.MODALITIES` order (t1n, t1c, t2w, t2f), as manifests write it.
    """

    def __init__(self, keys: str = IMAGE, modalities: Sequence[str] = MODALITIES) -> None:
        super().__init__(keys)
        self.modalities = tuple(modalities)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            paths = d[key]
            if isinstance(paths, (str, Path)):
                paths = [paths]
            paths = list(paths)
            have = tuple(d.get("modalities", MODALITIES))
            if len(paths) != len(have):
                raise DataError(
                    _case(d),
                    f"{key!r} lists {len(paths)} files but the item's modalities are {list(have)}: "
                    "give one file per modality, in that order",
                )
            missing = [m for m in self.modalities if m not in have]
            if missing:
                raise DataError(
                    _case(d),
                    f"modalities {missing} requested by data.modalities are not in this case "
                    f"(it has {list(have)})",
                )
            d[key] = [str(paths[have.index(m)]) for m in self.modalities]
        return d


class CheckFilesd(MapTransform):
    """Header-only checks before decoding (:func:`medidiff.data.checks.nifti_header`: readable,
    declared voxels under ``max_voxels``, finite non-singular affine), then: 3D, one shared grid.

    Records the paths under :data:`SOURCE_FILES_KEY` for later value checks. ``require`` lists
    keys that must be present (a labelled training run needs ``label`` on every case).
    """

    def __init__(self, keys: Sequence[str], require: Sequence[str] = (IMAGE,), atol: float = 1e-3,
                 max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.require = tuple(require)
        self.atol = atol
        self.max_voxels = max_voxels

    def _header(self, path: str) -> tuple[tuple[int, ...], np.ndarray]:
        img = nifti_header(path, max_voxels=self.max_voxels)  # header only; voxels are read later
        p = Path(path)
        shape = tuple(int(s) for s in img.shape)
        if len(shape) != 3:
            raise DataError(
                p,
                f"expected a 3D volume (one modality or label per file), got shape {shape}; "
                "4D files (e.g. MSD Task01 with 4 modalities in one file) must be split into "
                "one file per modality",
            )
        return shape, np.asarray(img.affine, dtype=np.float64)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.require:
            if d.get(key) is None:
                raise DataError(
                    _case(d),
                    f"item has no {key!r} but the pipeline needs it (for a label, set "
                    "data.label_mode: none or build the transforms with with_label=False)",
                )
        sources: dict[str, list[str] | str] = dict(d.get(SOURCE_FILES_KEY, {}))
        ref: tuple[str, tuple[int, ...], np.ndarray] | None = None
        for key in self.key_iterator(d):
            value = d[key]
            paths = [value] if isinstance(value, (str, Path)) else list(value)
            for path in paths:
                shape, affine = self._header(str(path))
                if ref is None:
                    ref = (str(path), shape, affine)
                elif shape != ref[1]:
                    raise DataError(path, f"shape {shape} differs from {ref[0]} {ref[1]}: modalities and label must share one grid")
                elif not np.allclose(affine, ref[2], atol=self.atol):
                    raise DataError(
                        path,
                        f"affine differs from {ref[0]}: modalities and label must share one grid "
                        f"(got {affine.round(3).tolist()}, expected {ref[2].round(3).tolist()})",
                    )
            sources[str(key)] = [str(p) for p in paths] if not isinstance(value, (str, Path)) else str(value)
        d[SOURCE_FILES_KEY] = sources
        return d


class LoadVolumesd(LoadImaged):
    """``LoadImaged`` whose failures name the file: a truncated or corrupt ``.nii.gz`` passes the
    header checks and fails only when its voxels are decoded, deep inside MONAI's reader."""

    def __init__(self, keys: Sequence[str], max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
        super().__init__(keys, reader="NibabelReader", image_only=True, dtype=np.float32)
        self.max_voxels = max_voxels

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        # A fresh reader per call: MONAI's NibabelReader keeps the file names of its last read()
        # on the instance and get_data() zips the images with them, so two threads sharing one
        # (CacheDataset fills its cache with data.num_workers threads) load a 4-modality case as
        # one volume when another thread's one-file read() (its label) lands in between.
        try:
            return super().__call__(data, reader or NibabelReader())
        except Exception as exc:  # noqa: BLE001 - zlib.error, EOFError, OSError... from the reader
            files = [f for key in self.keys if key in data for f in _files_of(data, key)]
            for f in files:  # find the culprit with the shared checks (only on failure)
                read_volume(f, max_voxels=self.max_voxels)
            raise DataError(files[0] if files else _case(data),
                            f"unreadable ({type(exc).__name__}: {exc})") from None


def _item_label_map(d: Mapping[Hashable, Any], label_map: Mapping[int, int]) -> dict[int, int]:
    """The manifest's label map with the item's own ``label_map`` on top (the item wins)."""
    try:
        return {**label_map, **parse_label_map(d.get("label_map"))}
    except ValueError as exc:
        raise DataError(_case(d), f"bad label_map in the manifest item: {exc}") from exc


class MapLabelsd(MapTransform):
    """Remap label values, e.g. BraTS 2021's ``{4: 3}`` to the medidiff convention.

    The map is the union of ``label_map`` (from the manifest's ``medidiff.label_map`` block) and
    the item's own ``label_map``; the item wins. All entries are applied simultaneously, so
    swaps like ``{1: 2, 2: 1}`` work.
    """

    def __init__(self, keys: str = LABEL, label_map: Mapping[Any, Any] | None = None) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.label_map = parse_label_map(label_map)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mapping = _item_label_map(d, self.label_map)
        if not mapping:
            return d
        for key in self.key_iterator(d):
            lab = d[key]
            out = lab.clone()
            for src, dst in mapping.items():
                out[lab == src] = dst
            d[key] = out
        return d


class CheckValuesd(MapTransform):
    """Reject NaN/Inf voxels, empty modalities and label values outside their convention.

    Runs after loading and before :class:`MapLabelsd`: label values are judged raw, against
    ``label_map`` and ``allowed_labels`` (after the map), so a file that does not fit the
    manifest's convention (a 3 in data declared BraTS 2021) is caught, not silently mapped. The
    checks are :mod:`medidiff.data.checks`'s, shared with ``manifest validate``.
    """

    def __init__(
        self,
        image_key: str = IMAGE,
        label_key: str | None = LABEL,
        allowed_labels: Sequence[int] = LABEL_VALUES,
        label_map: Mapping[Any, Any] | None = None,
    ) -> None:
        keys = [image_key] + ([label_key] if label_key else [])
        super().__init__(keys, allow_missing_keys=True)
        self.image_key, self.label_key = image_key, label_key
        self.allowed = tuple(int(v) for v in allowed_labels)
        self.label_map = parse_label_map(label_map)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key in d:
            img = d[self.image_key]  # (C, X, Y, Z)
            files = _files_of(d, self.image_key)
            for c in range(img.shape[0]):
                name = files[c] if c < len(files) else f"{files[0]} (channel {c})"
                check_image_values(img[c].detach().cpu().numpy(), name)
        if self.label_key and self.label_key in d:
            lab = d[self.label_key]
            (name,) = _files_of(d, self.label_key)[:1]
            values = label_values(lab.detach().cpu().numpy(), name)
            problem = label_problem(values, _item_label_map(d, self.label_map), self.allowed)
            if problem:
                raise DataError(name, problem)
        return d


def brain_fraction_kept(mask: np.ndarray | torch.Tensor, roi: Sequence[int]) -> float:
    """Fraction of the brain voxels of ``mask`` ((X, Y, Z) or (1, X, Y, Z)) that a centred crop to
    ``roi`` keeps (the crop of ``ResizeWithPadOrCropd``: start = size // 2 - roi // 2)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.reshape(m.shape[-3:]) if m.ndim == 4 else m
    total = int(np.count_nonzero(m))
    if total == 0:
        return 1.0
    window = tuple(slice(max(n // 2 - int(r) // 2, 0), max(n // 2 - int(r) // 2, 0) + int(r))
                   for n, r in zip(m.shape, roi))
    return int(np.count_nonzero(m[window])) / total


_CROP_WARNED: set[tuple[Any, ...]] = set()


class WarnBrainCropd(MapTransform):
    """Warn (once per roi/spacing per process) when the crop to ``roi`` removes brain voxels.

    A roi smaller than the brain at ``spacing`` silently trains on clipped heads (128^3 at 1 mm
    keeps ~92% of a BraTS brain); the warning gives the fraction and the fix. Sits just before
    the crop, after any foreground crop, where the brain is still the non-zero voxels."""

    def __init__(self, keys: str, roi: Sequence[int], spacing: Sequence[float], tolerance: float = 0.001) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.roi = tuple(int(r) for r in roi)
        self.spacing = tuple(float(s) for s in spacing)
        self.tolerance = tolerance

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = (self.roi, self.spacing)
        for k in self.key_iterator(d):
            if key in _CROP_WARNED:
                break
            kept = brain_fraction_kept(brain_mask(d[k]), self.roi)
            if kept < 1.0 - self.tolerance:
                _CROP_WARNED.add(key)
                extent = [round(n * s) for n, s in zip(d[k].shape[1:], self.spacing)]
                warnings.warn(
                    f"{_files_of(d, k)[0]}: data.roi {list(self.roi)} at data.spacing {list(self.spacing)} mm "
                    f"({[round(r * s) for r, s in zip(self.roi, self.spacing)]} mm) removes {100 * (1 - kept):.1f}% "
                    f"of this case's brain voxels (its extent: {extent} mm): use a coarser data.spacing or a "
                    "larger data.roi (warned once per roi and spacing)", stacklevel=2)
        return d


class ScaleBrainPercentilesd(MapTransform):
    """Per channel: percentiles inside the brain mask -> [-1, ``top``], clipped to [-1, 1]; background -1
    (``written=True``: every voxel scaled, below).

    The brain mask is "any modality non-zero" (:func:`brain_mask`); percentiles are taken per
    modality over those voxels, so each modality's brain spans the full range whatever its
    scanner units, and the background is exactly -1 in every channel.

    ``region="outside_tumour"`` takes the percentiles over the brain outside the labelled tumour
    (``label_key`` > 0, the raw label map on the image's grid) instead: over the whole brain an
    enhancing tumour holds a case's top percentile, so its normal brain sits lower than a
    tumour-free case's (t1c's normal-brain median -0.28 with a tumour against +0.22 without on the
    anatomy set), a coupling a generator must learn. Tumours brighter than the normal brain's top
    then land above ``top`` (t1c's enhancing tumour at ~1.8 normal-brain spans above the low
    percentile), so ``top`` < 1 leaves them room. A case without a label (or whose brain is all
    tumour) is scaled over its whole brain.

    ``written=True`` reads a generated case as ``medidiff generate`` wrote it, whose background is
    near 0 but not exactly 0: its brain is :func:`medidiff.data.brain.written_brain_mask` (the
    non-zero voxels would be the whole volume, and percentiles over it moved t1c's normal brain by
    +0.4), and every voxel is scaled (clipped), so a faint background stays visible to the
    background check instead of becoming -1.
    """

    def __init__(self, keys: str = IMAGE, percentiles: tuple[float, float] = (0.5, 99.5), *,
                 region: str = "brain", top: float = 1.0, label_key: str = LABEL, written: bool = False) -> None:
        super().__init__(keys)
        self.lo, self.hi = float(percentiles[0]), float(percentiles[1])
        self.region, self.top, self.label_key = region, float(top), label_key
        self.written = written

    def _reference(self, d: Mapping[Hashable, Any], brain: np.ndarray) -> np.ndarray:
        """The voxels whose percentiles set the scale: the brain, or the brain outside the tumour."""
        label = d.get(self.label_key) if self.region == "outside_tumour" else None
        if label is None:
            return brain
        lab = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        normal = brain & ~(lab.reshape(brain.shape) > 0)
        return normal if normal.any() else brain

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            files = _files_of(d, key)
            mask = brain_mask(arr)[0]  # (X, Y, Z)
            if self.written:
                found = written_brain_mask(arr)
                if found.any():
                    mask = found
                else:  # scaled over its non-zero voxels, as a scan would be: said, since a hazy case is misread so
                    warnings.warn(f"{files[0]}: no brain found above the background; its intensity scale is taken "
                                  "over its non-zero voxels", stacklevel=2)
            ref = self._reference(d, mask)
            out = np.full(arr.shape, -1.0, dtype=np.float32)
            for c in range(arr.shape[0]):
                vals = arr[c][mask].astype(np.float64)
                if vals.size == 0:
                    raise DataError(files[0], "no brain (non-zero) voxels left after resampling/cropping")
                # np.percentile, not torch.quantile: the latter refuses > 2**24 elements.
                ref_vals = vals if ref is mask else arr[c][ref].astype(np.float64)  # the default: no second copy
                lo, hi = np.percentile(ref_vals, [self.lo, self.hi])
                if not hi > lo:
                    name = files[c] if c < len(files) else f"{files[0]} (channel {c})"
                    raise DataError(
                        name,
                        f"intensity is constant ({lo:g}) between the {self.lo}th and {self.hi}th "
                        "percentiles inside the brain: cannot scale to [-1, 1]",
                    )
                if self.written:  # every voxel, so the background keeps what the generator drew
                    out[c] = np.clip((arr[c] - lo) / (hi - lo) * (self.top + 1.0) - 1.0, -1.0, 1.0)
                else:
                    out[c][mask] = np.clip((vals - lo) / (hi - lo) * (self.top + 1.0) - 1.0, -1.0, 1.0)
            d[key] = _with_data(torch.from_numpy(out), img)
        return d


class BlockDownsampled(MapTransform):
    """Downsample by an integer ``factor`` in every spatial dimension, updating the affine.

    Images (``image_keys``) are block-averaged (area), so [-1, 1] and the -1 background are
    preserved. Labels (``label_keys``, integer maps (1, X, Y, Z)) take the most frequent label
    of each block; ties go to the higher label, so a tumour covering half a block survives
    (:func:`~medidiff.data.labels.block_majority_labels`, shared with the cascade's SR stage).
    A new voxel's centre is the centre of its block: affine' = affine @ [f*I, (f-1)/2; 0, 1].
    """

    def __init__(self, image_keys: Sequence[str] = (IMAGE,), label_keys: Sequence[str] = (LABEL,), factor: int = 1) -> None:
        super().__init__(list(image_keys) + list(label_keys), allow_missing_keys=True)
        self.image_keys, self.label_keys = tuple(image_keys), tuple(label_keys)
        self.factor = int(factor)

    def _affine(self, like: torch.Tensor) -> torch.Tensor | None:
        if not isinstance(like, MetaTensor):
            return None
        f = self.factor
        step = torch.eye(4, dtype=torch.float64)
        step[:3, :3] *= f
        step[:3, 3] = (f - 1) / 2.0
        return like.affine.to(torch.float64) @ step

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        f = self.factor
        if f == 1:
            return d
        for key in self.key_iterator(d):
            x = d[key]
            if any(s % f for s in x.shape[1:]):
                raise ValueError(f"{_case(d)}[{key}]: spatial shape {tuple(x.shape[1:])} not divisible by downsample {f}")
            t = torch.as_tensor(x).float()
            if key in self.image_keys:
                out = F.avg_pool3d(t[None], kernel_size=f, stride=f)[0]  # (C, X/f, Y/f, Z/f)
            else:  # the one rule every stage uses (medidiff.data.labels)
                out = block_majority_labels(t.long(), f).to(t.dtype)  # (1, X/f, Y/f, Z/f)
            d[key] = _with_data(out, x, self._affine(x))
        return d


class LabelToChannelsd(MapTransform):
    """Integer label map (1, X, Y, Z) -> the representation of ``mode``.

    ``labels``: int64 (1, ...). ``onehot``: uint8 (4, ...) for labels 0..3. ``regions``: uint8
    (3, ...) WT, TC, ET from :data:`~medidiff.data.brats.REGIONS`. We build regions ourselves:
    MONAI's ConvertToMultiChannelBasedOnBratsClasses orders them TC, WT, ET.
    """

    def __init__(self, keys: str = LABEL, mode: LabelMode = "labels") -> None:
        super().__init__(keys, allow_missing_keys=True)
        if mode not in ("none", "labels", "onehot", "regions"):
            raise ValueError(f"label mode must be 'none', 'labels', 'onehot' or 'regions', got {mode!r}")
        self.mode = mode

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.mode == "none":
                del d[key]
                continue
            lab = d[key]
            ints = torch.as_tensor(lab).round().long()  # (1, X, Y, Z)
            if self.mode == "labels":
                out = ints
            elif self.mode == "onehot":
                out = torch.cat([(ints == v) for v in LABEL_VALUES], dim=0).to(torch.uint8)
            else:
                out = torch.cat([torch.isin(ints, torch.tensor(v)) for v in REGIONS.values()], dim=0).to(torch.uint8)
            d[key] = _with_data(out, lab)
        return d


# --------------------------------------------------------------------------------------------
# Pipeline builders
# --------------------------------------------------------------------------------------------


def medidiff_error_of(exc: BaseException) -> MedidiffError | None:
    """The MedidiffError inside MONAI's ``RuntimeError("applying transform ...")`` wrappers."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, MedidiffError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class Pipeline(Compose):
    """``Compose`` that lets our DataErrors through unwrapped.

    MONAI wraps every exception raised inside a transform in ``RuntimeError("applying
    transform <...>")``; the CLI reports MedidiffErrors as one clear line, so re-raise ours.
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as exc:
            err = medidiff_error_of(exc)
            if err is None:
                raise
            raise err from None


def label_channels(mode: LabelMode) -> int:
    """Number of label channels each mode produces (0 for ``none``)."""
    return {"none": 0, "labels": 1, "onehot": len(LABEL_VALUES), "regions": len(REGIONS)}[mode]


def output_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """Spatial shape of the pipeline's output: ``cfg.roi // cfg.downsample``."""
    return tuple(int(r) // cfg.downsample for r in cfg.roi)  # type: ignore[return-value]


def output_spacing(cfg: DataConfig) -> tuple[float, float, float]:
    """Voxel size (mm) of the pipeline's output, the model grid: ``cfg.spacing * cfg.downsample``."""
    return tuple(float(s) * cfg.downsample for s in cfg.spacing)  # type: ignore[return-value]


def deterministic_transforms(
    cfg: DataConfig,
    *,
    divisor: int = 1,
    label_map: Mapping[Any, Any] | None = None,
    with_label: bool = True,
) -> list[MapTransform]:
    """Steps 1-10 of the module docstring: everything a dataset cache may store.

    ``divisor`` is the network's total downsampling (e.g. ``2**levels``); ``cfg.roi`` must be a
    multiple of ``divisor * cfg.downsample`` (ConfigError naming the nearest valid roi).
    """
    check_roi_divisible(cfg.roi, divisor, cfg.downsample)
    use_label = with_label and cfg.label_mode != "none"
    keys = [IMAGE, LABEL] if use_label else [IMAGE]
    roi = tuple(int(r) for r in cfg.roi)
    ts: list[MapTransform] = [] if use_label else [DeleteItemsd(LABEL)]  # label_mode none: drop it
    ts += [
        SelectModalitiesd(IMAGE, cfg.modalities),
        CheckFilesd(keys, require=keys, max_voxels=cfg.max_voxels),
        LoadVolumesd(keys, max_voxels=cfg.max_voxels),
        EnsureChannelFirstd(IMAGE),
    ]
    if use_label:
        # Labels never carry a channel dim on disk (CheckFilesd enforced 3D).
        ts.append(EnsureChannelFirstd(LABEL, channel_dim="no_channel"))
    ts.append(CheckValuesd(IMAGE, LABEL if use_label else None, label_map=label_map))
    if use_label:
        ts.append(MapLabelsd(LABEL, label_map))
    ts += [
        # Explicit nibabel-style labels: NibabelReader puts arrays in RAS+ world space, and
        # pinning them silences MONAI's changing default (labels=None reads the meta 'space').
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        # zeros padding: the brain background is 0, and "border" would smear edge voxels.
        Spacingd(
            keys,
            pixdim=tuple(float(s) for s in cfg.spacing),
            mode=("bilinear", "nearest")[: len(keys)],
            padding_mode="zeros",
        ),
    ]
    if cfg.crop_foreground:
        ts.append(
            CropForegroundd(keys, source_key=IMAGE, select_fn=_nonzero, allow_smaller=True, margin=0)
        )
    ts += [
        WarnBrainCropd(IMAGE, roi, cfg.spacing),
        ScaleBrainPercentilesd(IMAGE, tuple(cfg.percentiles),  # type: ignore[arg-type]
                               region=cfg.percentile_region if use_label else "brain", top=cfg.percentile_top),
        ResizeWithPadOrCropd(IMAGE, spatial_size=roi, mode="constant", value=-1.0),
    ]
    if use_label:
        ts.append(ResizeWithPadOrCropd(LABEL, spatial_size=roi, mode="constant", value=0))
    if cfg.downsample > 1:
        ts.append(BlockDownsampled((IMAGE,), (LABEL,) if use_label else (), factor=cfg.downsample))
    if use_label:
        ts.append(LabelToChannelsd(LABEL, cfg.label_mode))
    return ts


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    # Module-level (not a lambda) so the pipeline pickles for DataLoader workers.
    return x != 0


class PlainTensorsd(MapTransform):
    """``keys`` as plain tensors sharing their memory: no MONAI metadata.

    Put before ``RandFlipd``: an unflipped draw returns the cached MetaTensor itself and records the
    draw in its ``applied_operations``, so with ``data.cache: memory`` (no copy of the cached case)
    every cached case's metadata grew by one entry per draw, in every loader worker, for the whole
    run. A plain tensor is wrapped in a new MetaTensor by the flip instead. Not random, so a cache
    keeps its output: the cached cases are stored without metadata, which nothing after the cache reads.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
        return d


def random_transforms(cfg: DataConfig, *, train: bool = True, with_label: bool = True) -> list[MapTransform]:
    """Augmentation (train only) and the final dtype: what runs after the cache."""
    use_label = with_label and cfg.label_mode != "none"
    keys = [IMAGE, LABEL] if use_label else [IMAGE]
    ts: list[MapTransform] = []
    if train and cfg.flip_prob > 0:
        # Axis 0 is x = left-right after Orientationd("RAS"); brains are roughly symmetric.
        ts += [PlainTensorsd(keys), RandFlipd(keys, prob=cfg.flip_prob, spatial_axis=0)]
    ts.append(EnsureTyped(IMAGE, dtype=torch.float32))
    if use_label:
        # masks stay uint8 up to the device (an anatomy batch: 138 -> 93 MB; the loop waited for its
        # loader, benchmarks/results/loop_h200_20261201b); disk caches written as float32 still load
        ts.append(EnsureTyped(LABEL, dtype=torch.int64 if cfg.label_mode == "labels" else torch.uint8))
    return ts


def build_transforms(
    cfg: DataConfig,
    *,
    divisor: int = 1,
    train: bool = True,
    label_map: Mapping[Any, Any] | None = None,
    with_label: bool = True,
    random: Sequence[MapTransform] | None = None,
) -> Pipeline:
    """The whole pipeline: ``deterministic_transforms`` then ``random_transforms``, or ``random``
    in their place (the SR stage cuts its training window there: :mod:`medidiff.cascade.windows`).

    Cache/PersistentDataset given this Compose cache everything before the first random
    transform. Seed the random part with ``Compose.set_random_state`` (make_loader does).
    """
    tail = list(random) if random is not None else random_transforms(cfg, train=train, with_label=with_label)
    return Pipeline(deterministic_transforms(cfg, divisor=divisor, label_map=label_map, with_label=with_label) + tail)
