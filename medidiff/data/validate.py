"""Check a manifest and every file it names; report every problem, not just the first.

``validate_manifest(path)`` returns a list of :class:`Problem` records (case id, file, message,
severity). Errors make ``medidiff manifest validate`` exit with 1; warnings are printed but only
fail the run with ``--strict``.

What is checked (errors unless marked):

* the manifest: readable JSON object, a non-empty ``training`` and/or ``test`` list (an empty
  list crashes MONAI), the ``medidiff`` block (modalities, label_map, num_folds), folds in range;
* each case: a string ``case_id``, one ``image`` path per modality and the per-modality keys
  agreeing with it, ``label`` present exactly when ``has_label`` is true;
* each path: relative and inside the root after resolving ``..`` *and symlinks* (a loop is an
  error); the file exists;
* each file: the checks the data pipeline runs (:mod:`medidiff.data.checks`, one copy): declared
  voxels under ``max_voxels``, a finite non-singular affine, loads completely (truncated or
  corrupt ``.nii.gz`` are reported with the exception type; ``.gz`` files are read to the end
  so the gzip CRC is checked); is 3D;
* across a case: every modality and the label have the same shape and affine (``allclose``,
  ``atol=1e-3``); the odd one out is the file that disagrees with the majority;
* images: no NaN/Inf voxels, not all zero (errors: the pipeline refuses both);
* labels: finite, integer-valued, and, after the manifest's ``label_map`` (raw 2021 value 4 -> 3),
  inside the allowed set (``--labels``, else the manifest's ``medidiff.labels``; no check if
  neither says);
* across cases: duplicate case ids and files used twice.

A file of shape (X, Y, Z, 1) holds a 3D volume and is compared as (X, Y, Z). It is an *error*
when it is one of several modalities in ``image`` (MONAI's ``LoadImaged`` stacks the list and
fails on mixed ranks: checked with MONAI 1.6) and a *warning* for a label or a single-modality
image, which load fine.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medidiff.data.checks import (
    DEFAULT_MAX_VOXELS,
    check_image_values,
    confined_path,
    label_problem,
    label_values,
    read_volume,
)
from medidiff.data.manifest import FORMAT_VERSION, RESERVED_KEYS, manifest_root, missing_root_message
from medidiff.errors import DataError

__all__ = ["Severity", "Problem", "check_case", "validate_manifest", "format_problems"]

Severity = Literal["error", "warning"]

AFFINE_ATOL = 1e-3  # mm; BraTS files written by different tools differ in float rounding only


@dataclass(frozen=True)
class Problem:
    """One problem: which case (None for the manifest itself), which file, what is wrong."""

    case_id: str | None
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        case = f" [case {self.case_id}]" if self.case_id is not None else ""
        return f"{self.severity.upper()}: {self.path}:{case} {self.message}"


@dataclass
class _Volume:
    role: str
    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray


def _resolve(rel: str, root: Path) -> tuple[Path, str | None]:
    """Absolute path of ``rel`` under ``root``, and why it is not acceptable (None if fine)."""
    if os.path.isabs(rel):
        return Path(rel), f"absolute path {rel!r}: manifest paths must be relative to the data root"
    joined = Path(os.path.normpath(root / rel))
    try:
        confined_path(joined, root)
    except DataError as exc:
        if "outside the data root" not in exc.problem:
            return joined, exc.problem
        how = "a symlink" if os.path.normpath(rel).split(os.sep)[0] != ".." else "'..'"
        return joined, f"path {rel!r} escapes the data root {root} (via {how}; {exc.problem})"
    return joined, None


def check_case(
    item: Any,
    root: str | Path,
    *,
    modalities: Sequence[str] | None = None,
    label_map: Mapping[int, int] | None = None,
    labels: Collection[int] | None = None,
    num_folds: int | None = None,
    split: str = "training",
    index: int | None = None,
    source: str = "<manifest>",
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> list[Problem]:
    """Every problem of one manifest item (its entries and its files).

    ``root`` is the data root; ``modalities`` the expected channel order (None: only require a
    non-empty image list); ``labels`` the allowed values after ``label_map``; ``source`` the
    manifest path, named in problems that are about the manifest entry rather than a file.
    The file checks are :mod:`medidiff.data.checks`, the ones the data pipeline runs.
    """
    root = Path(root).absolute()
    where = f"{split}[{index}]" if index is not None else split
    if not isinstance(item, dict):
        return [Problem(None, source, f"{where} must be an object, got {type(item).__name__}")]
    probs: list[Problem] = []
    cid = item.get("case_id")
    if not isinstance(cid, str) or not cid:
        probs.append(Problem(None, source, f"{where} has no string 'case_id' (got {cid!r})"))
        cid = None
    case = cid if cid is not None else where

    def bad(path: object, msg: str, severity: Severity = "error") -> None:
        probs.append(Problem(case, str(path), msg, severity))

    # ---- the entry itself -------------------------------------------------------------------
    entries: list[tuple[str, str]] = []  # (role, relative path)
    image = item.get("image")
    if not isinstance(image, list) or not image or not all(isinstance(p, str) for p in image):
        bad(source, f"{where}.image must be a non-empty list of path strings, got {image!r:.100}")
        image = []
    if modalities is not None and len(image) != len(modalities):
        bad(source, f"missing modality: {where}.image has {len(image)} path(s) for the "
            f"{len(modalities)} modalities {list(modalities)}")
    for i, rel in enumerate(image):
        role = modalities[i] if modalities is not None and i < len(modalities) else f"image[{i}]"
        entries.append((role, rel))
    for i, mod in enumerate(modalities or []):
        key = item.get(mod)
        if key is None:
            bad(source, f"missing modality: {where} has no {mod!r} key")
        elif not isinstance(key, str):
            bad(source, f"{where}.{mod} must be a path string, got {key!r}")
        elif i < len(image) and key != image[i]:
            bad(source, f"{where}.{mod} = {key!r} but image[{i}] = {image[i]!r}: the per-modality "
                "key and the image list must name the same file")
    has_label = item.get("has_label")
    label = item.get("label")
    if has_label is not None and not isinstance(has_label, bool):
        bad(source, f"{where}.has_label must be true or false, got {has_label!r}")
    elif has_label is True and label is None:
        bad(source, f"{where} says has_label true but has no 'label' path")
    elif has_label is False and label is not None:
        bad(source, f"{where} has a 'label' but says has_label false")
    if label is not None:
        if isinstance(label, str):
            entries.append(("label", label))
        else:
            bad(source, f"{where}.label must be a path string, got {label!r}")
    if split == "training" and num_folds is not None:
        fold = item.get("fold")
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < num_folds:
            bad(source, f"{where}.fold must be an integer in [0, {num_folds}), got {fold!r}")

    # ---- the files ----------------------------------------------------------------------------
    volumes: list[_Volume] = []
    for role, rel in entries:
        path, escape = _resolve(rel, root)
        if escape:
            bad(path, escape)
            continue
        if not path.is_file():
            bad(path, f"missing file ({role})" if not path.exists() else f"not a regular file ({role})")
            continue
        try:
            data, affine = read_volume(path, max_voxels=max_voxels)
        except DataError as exc:
            bad(path, f"{role}: {exc.problem}")
            continue
        if data.ndim == 4 and data.shape[3] == 1:
            stacked = role != "label" and len(image) > 1
            if stacked:
                bad(path, f"{role} has shape {data.shape}: MONAI's LoadImaged cannot stack it with "
                    "the case's 3D modalities; rewrite it as 3D (squeeze the last axis)")
            else:
                bad(path, f"{role} has shape {data.shape}: trailing singleton dimension, treated "
                    "as 3D (rewriting it as 3D is cleaner)", "warning")
            data = data[..., 0]
        if data.ndim != 3:
            bad(path, f"{role} is not 3D: shape {data.shape} (one 3D volume per file expected)")
            continue
        volumes.append(_Volume(role, path, tuple(data.shape), affine))
        if role == "label":
            _check_label(data, path, label_map or {}, labels, bad)
        else:
            _check_image(data, path, role, bad)
        del data

    # ---- consistency across the case: the odd one out disagrees with the majority ------------
    if len(volumes) > 1:
        shapes = Counter(v.shape for v in volumes)
        ref_shape = max(shapes, key=lambda s: (shapes[s], -[v.shape for v in volumes].index(s)))
        ref_role = next(v.role for v in volumes if v.shape == ref_shape)
        for v in volumes:
            if v.shape != ref_shape:
                bad(v.path, f"{v.role} shape {v.shape} differs from the case's {ref_shape} "
                    f"({ref_role} and the others)")
        same = [sum(np.allclose(a.affine, b.affine, atol=AFFINE_ATOL) for b in volumes) for a in volumes]
        ref = volumes[int(np.argmax(same))]
        for v in volumes:
            if not np.allclose(v.affine, ref.affine, atol=AFFINE_ATOL):
                diff = float(np.abs(v.affine - ref.affine).max())
                bad(v.path, f"{v.role} affine differs from {ref.role}'s (max abs difference "
                    f"{diff:.4g} > {AFFINE_ATOL}): {np.round(v.affine, 4).tolist()} vs "
                    f"{np.round(ref.affine, 4).tolist()}")
    return probs


def _check_image(data: np.ndarray, path: Path, role: str, bad: Any) -> None:
    try:
        check_image_values(data, path)
    except DataError as exc:
        bad(path, f"{role}: {exc.problem}")


def _check_label(
    data: np.ndarray, path: Path, label_map: Mapping[int, int], labels: Collection[int] | None, bad: Any
) -> None:
    try:
        values = label_values(data, path)
    except DataError as exc:
        bad(path, exc.problem)
        return
    problem = label_problem(values, label_map, labels) if labels is not None else None
    if problem:
        bad(path, problem)


def validate_manifest(
    path: str | Path,
    root: str | Path | None = None,
    labels: Collection[int] | None = None,
    *,
    progress: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> list[Problem]:
    """Every problem of the manifest at ``path`` and of every file it names.

    ``root`` is the data root (default: the folder containing the manifest). ``labels`` overrides
    the allowed label values (after ``label_map``); default: the manifest's ``medidiff.labels``.
    ``progress`` shows a tqdm bar over cases on stderr (hidden when stderr is not a terminal).
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        return [Problem(None, src, "manifest not found")]
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [Problem(None, src, f"manifest is not valid JSON ({type(exc).__name__}: {exc})")]
    if not isinstance(data, dict):
        return [Problem(None, src, f"manifest must be a JSON object, got {type(data).__name__}")]
    probs: list[Problem] = []
    base = manifest_root(path, root)
    if not base.is_dir():
        return [Problem(None, str(base), "data root is not a directory")]

    # ---- manifest-level structure ---------------------------------------------------------------
    meta = data.get("medidiff")
    modalities: list[str] | None = None
    label_map: dict[int, int] = {}
    num_folds: int | None = None
    manifest_labels: list[int] | None = None
    if not isinstance(meta, dict):
        probs.append(Problem(None, src, "missing 'medidiff' block (modalities, label_map, num_folds): "
                             "rebuild the manifest with `medidiff manifest build`"))
    else:
        fv = meta.get("format_version")
        if not isinstance(fv, int) or fv > FORMAT_VERSION:
            probs.append(Problem(None, src, f"medidiff.format_version {fv!r} is not one this medidiff "
                                 f"reads (<= {FORMAT_VERSION})"))
        mods = meta.get("modalities")
        if (not isinstance(mods, list) or not mods or not all(isinstance(m, str) for m in mods)
                or any(m in RESERVED_KEYS for m in mods)):
            probs.append(Problem(None, src, f"medidiff.modalities must be a non-empty list of names "
                                 f"(not {sorted(RESERVED_KEYS)}), got {mods!r}"))
        else:
            modalities = mods
        raw_map = meta.get("label_map", {})
        try:
            label_map = {int(k): int(v) for k, v in (raw_map or {}).items()}
        except (AttributeError, TypeError, ValueError):
            probs.append(Problem(None, src, f"medidiff.label_map must map integers to integers, "
                                 f"e.g. {{\"4\": 3}}, got {raw_map!r}"))
        nf = meta.get("num_folds")
        if isinstance(nf, int) and not isinstance(nf, bool) and nf >= 1:
            num_folds = nf
        else:
            probs.append(Problem(None, src, f"medidiff.num_folds must be a positive integer, got {nf!r}"))
        ml = meta.get("labels")
        if isinstance(ml, dict):
            try:
                manifest_labels = [int(k) for k in ml]
            except ValueError:
                probs.append(Problem(None, src, f"medidiff.labels keys must be integers, got {list(ml)}"))
    allowed = list(labels) if labels is not None else manifest_labels

    splits: list[tuple[str, list[Any]]] = []
    for key in ("training", "validation", "test"):
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, list):
            probs.append(Problem(None, src, f"{key!r} must be a list of cases, got {type(value).__name__}"))
        elif not value:
            probs.append(Problem(None, src, f"{key!r} is an empty list, which crashes MONAI's "
                                 "load_decathlon_datalist: remove the key"))
        else:
            splits.append((key, value))
    if not any(k in data for k in ("training", "test", "validation")):
        probs.append(Problem(None, src, "no 'training' or 'test' list of cases"))

    # ---- cases ----------------------------------------------------------------------------------
    from tqdm import tqdm

    work = [(split, i, item) for split, items in splits for i, item in enumerate(items)]
    seen_ids: dict[str, str] = {}
    seen_paths: dict[str, str] = {}
    n_files = n_missing = 0
    for split, i, item in tqdm(work, desc="validate", unit="case", file=sys.stderr,
                               disable=None if progress else True):
        probs.extend(check_case(item, base, modalities=modalities, label_map=label_map, labels=allowed,
                                num_folds=num_folds, split=split, index=i, source=src, max_voxels=max_voxels))
        if not isinstance(item, dict):
            continue
        where = f"{split}[{i}]"
        cid = item.get("case_id")
        if isinstance(cid, str):
            if cid in seen_ids:
                probs.append(Problem(cid, src, f"duplicate case_id: {where} repeats {seen_ids[cid]}"))
            else:
                seen_ids[cid] = where
        rels = list(item.get("image") or []) if isinstance(item.get("image"), list) else []
        if isinstance(item.get("label"), str):
            rels.append(item["label"])
        for rel in dict.fromkeys(r for r in rels if isinstance(r, str)):
            n_files += 1
            if os.path.isabs(rel):
                continue
            full = os.path.normpath(base / rel)
            n_missing += not os.path.lexists(full)
            if full in seen_paths:
                probs.append(Problem(cid if isinstance(cid, str) else where, full,
                                     f"duplicate path: {where} uses a file that {seen_paths[full]} uses too"))
            else:
                seen_paths[full] = f"{where} ({cid})"
    if n_files and n_missing == n_files:
        probs.insert(0, Problem(None, src, missing_root_message(data, base, n_files, root_given=root is not None)))
    return probs


def format_problems(problems: Sequence[Problem]) -> str:
    """One line per problem (``SEVERITY: file: [case id] message``)."""
    return "\n".join(str(p) for p in problems)
