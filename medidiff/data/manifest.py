"""Data manifests: MONAI/Decathlon datalists with paths relative to a data root.

A manifest is a JSON file that ``monai.data.load_decathlon_datalist(path, is_segmentation=True,
data_list_key="training", base_dir=ROOT)`` reads as it is. medidiff adds per-case keys and a
``medidiff`` metadata block::

    {
      "name": "brats2023-gli",
      "description": "...",
      "tensorImageSize": "3D",
      "modality": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},    # Decathlon metadata
      "labels": {"0": "background", "1": "NCR/NETC", "2": "SNFH/ED", "3": "ET"},
      "numTraining": 2, "numTest": 1,
      "medidiff": {
        "format_version": 1,
        "source_layout": "brats2021" | "brats2023" | "generic",
        "modalities": ["t1n", "t1c", "t2w", "t2f"],     # channel order of "image"
        "label_convention": "brats2023" | "custom" | "none",
        "labels": {"0": "background", ...} | null,        # label values AFTER label_map
        "label_map": {"4": 3},                            # raw file value -> medidiff value
        "num_folds": 5, "seed": 0,
        "fold_rule": "...",                               # how "fold" was computed
        "created_by": "medidiff 0.1.0",
        "root_hint": "/abs/path/the/builder/saw",         # informational only, never used
        "excluded": [{"case_id": ..., "reason": ...}]     # cases left out (--skip-incomplete)
      },
      "training": [                                       # cases with a label (see below)
        {"case_id": "BraTS-GLI-00000-000", "subject_id": "BraTS-GLI-00000",
         "image": ["BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz", ...],  # t1n,t1c,t2w,t2f
         "label": "BraTS-GLI-00000-000/BraTS-GLI-00000-000-seg.nii.gz",
         "t1n": "...", "t1c": "...", "t2w": "...", "t2f": "...",
         "has_label": true, "fold": 3}
      ],
      "test": [ ... same keys, "has_label": false, no "label", no "fold" ... ]
    }

The data root. Paths are relative (posix) to the data root the builder was given; the root is
not part of the manifest (``root_hint`` only records where it was built, for error messages).
Whoever reads a manifest passes the root: ``load_manifest(path, root=...)``, ``medidiff manifest
validate FILE --root ROOT``, ``data.root`` in configs. When no root is given, the root is the
folder that contains the manifest file (MONAI's own default), which is right for a manifest
stored inside its data set and wrong for one in ``data_manifests/``.

Folds. ``fold = sha256("{seed}:{subject_id}") mod num_folds``: a case's fold depends only on its
own subject id and the seed, never on which other cases exist, so adding cases (a new release,
more sites) leaves every existing case in its fold. The price is that folds are balanced only
statistically (multinomial), not exactly. The hash is of the *subject*, so the time points of a
longitudinal subject (BraTS 2023 ``-000``, ``-001``) always share a fold and never leak across
the train/validation split.

Splits. Cases with a label go under ``"training"`` (with folds); BraTS cases without one
(validation releases) go under ``"test"``. An empty ``"test"`` list crashes MONAI's loader, so
the key is omitted when there are no such cases. A generic folder built without any label option
is an image-only data set (unconditional generation): all its cases go under ``"training"`` with
``"has_label": false``.

MONAI trap handled by :func:`load_manifest`: ``load_decathlon_datalist`` joins *any* string value
with the root when the result exists on disk, so ``"case_id": "BraTS2021_00000"`` would come back
as ``/root/BraTS2021_00000`` (the case folder). :func:`load_manifest` restores the non-path keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medidiff import __version__
from medidiff.data.brats import (
    BRATS2021_LABEL_MAP,
    BRATS2021_SUFFIXES,
    BRATS2023_SUFFIXES,
    LABELS,
    MODALITIES,
)
from medidiff.data.checks import confined_path
from medidiff.errors import DataError
from medidiff.files import write_text_atomic

__all__ = [
    "FORMAT_VERSION",
    "Layout",
    "Split",
    "RESERVED_KEYS",
    "Case",
    "assign_fold",
    "detect_brats_layout",
    "scan_brats",
    "scan_folder",
    "make_manifest",
    "build_brats_manifest",
    "build_folder_manifest",
    "write_manifest",
    "read_manifest",
    "manifest_root",
    "label_map_of",
    "modalities_of",
    "load_manifest",
    "split_folds",
]

FORMAT_VERSION = 1

Layout = Literal["brats2021", "brats2023", "generic"]
Split = Literal["training", "test", "validation"]

# Keys an item has besides its per-modality keys; a modality may not be called like one of them.
RESERVED_KEYS: frozenset[str] = frozenset(
    {"image", "label", "case_id", "subject_id", "fold", "has_label", "text"}
)
# Keys whose values are data paths (besides the per-modality keys).
_PATH_KEYS = ("image", "label")

FOLD_RULE = (
    "fold = int.from_bytes(sha256(f'{seed}:{subject_id}').digest()[:8], 'big') % num_folds; "
    "depends only on the case's own subject id, so adding cases never moves existing ones"
)

_NIFTI_EXT = r"\.nii(?:\.gz)?"
_BRATS2021_RE = re.compile(
    rf"^(?P<case>.+)_(?P<mod>{'|'.join(sorted([*BRATS2021_SUFFIXES, 'seg'], key=len, reverse=True))}){_NIFTI_EXT}$"
)
_BRATS2023_RE = re.compile(
    rf"^(?P<case>.+)-(?P<mod>{'|'.join(sorted([*BRATS2023_SUFFIXES, 'seg'], key=len, reverse=True))}){_NIFTI_EXT}$"
)
# BraTS 2023+ case ids end in a 3-digit time point: BraTS-GLI-00000-001 is subject BraTS-GLI-00000.
_TIMEPOINT_RE = re.compile(r"^(?P<subject>.+)-\d{3}$")


@dataclass
class Case:
    """One case found on disk; paths are relative posix strings under the data root."""

    case_id: str
    images: dict[str, str]  # modality -> path
    label: str | None = None
    subject_id: str | None = None  # None = same as case_id


# --------------------------------------------------------------------------------------------
# Folds
# --------------------------------------------------------------------------------------------


def assign_fold(group_id: str, num_folds: int, seed: int = 0) -> int:
    """Fold of ``group_id`` (a subject id): a seeded hash, independent of every other case."""
    if num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")
    digest = hashlib.sha256(f"{seed}:{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_folds


# --------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------


def _hidden(name: str) -> bool:
    # macOS archives leave "._BraTS..." AppleDouble files beside the real ones: never data.
    return name.startswith(".")


def _walk_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not _hidden(f))
    return out


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, "data root is not a directory")
    return root.absolute()


def detect_brats_layout(root: str | Path) -> Literal["brats2021", "brats2023"]:
    """Which BraTS release layout ``root`` holds (see :func:`scan_brats`)."""
    return scan_brats(root, skip_incomplete=True)[0]  # type: ignore[return-value]


def scan_brats(
    root: str | Path, *, skip_incomplete: bool = False
) -> tuple[Literal["brats2021", "brats2023"], list[Case], list[dict[str, str]]]:
    """Find BraTS cases under ``root`` (any depth) and tell the release layout apart.

    2021: ``<case>_{t1,t1ce,t2,flair}.nii.gz`` (+ ``_seg``); 2023+: ``<case>-{t1n,t1c,t2w,t2f}.nii.gz``
    (+ ``-seg``) for every cohort (GLI, MEN, MET, PED, SSA, ...). A case is a (folder, case id)
    pair; ``.nii`` works as well as ``.nii.gz``. Returns ``(layout, cases, excluded)``.

    Raises DataError when nothing is found, when both layouts are present, when a case id occurs
    in two folders, or (unless ``skip_incomplete``) when a case lacks a modality.
    """
    root = _check_root(root)
    found: dict[str, dict[tuple[Path, str], dict[str, Path]]] = {"brats2021": {}, "brats2023": {}}
    for path in _walk_files(root):
        for layout, rx in (("brats2021", _BRATS2021_RE), ("brats2023", _BRATS2023_RE)):
            m = rx.match(path.name)
            if m:
                files = found[layout].setdefault((path.parent, m["case"]), {})
                mod = m["mod"]
                if mod in files:  # both .nii and .nii.gz of one modality
                    raise DataError(
                        path, f"case {m['case']} has two {mod} files ({files[mod].name} and "
                        f"{path.name}): keep one"
                    )
                files[mod] = path
                break
    n21, n23 = len(found["brats2021"]), len(found["brats2023"])
    if n21 == 0 and n23 == 0:
        raise DataError(
            root,
            "no BraTS cases found (searched all sub-folders). Expected BraTS 2021 files like "
            "BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz or BraTS 2023+ files "
            "like BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz. For other "
            "layouts use `medidiff manifest build folder`",
        )
    if n21 and n23:
        ex21 = _rel(next(iter(found["brats2021"]))[0], root)
        ex23 = _rel(next(iter(found["brats2023"]))[0], root)
        raise DataError(
            root,
            f"mixed BraTS layouts: {n21} BraTS 2021-style cases (e.g. {ex21}/) and {n23} "
            f"BraTS 2023-style cases (e.g. {ex23}/). Their label conventions differ (ET = 4 vs 3): "
            "build one manifest per release, from separate roots",
        )
    layout: Literal["brats2021", "brats2023"] = "brats2021" if n21 else "brats2023"
    suffixes = BRATS2021_SUFFIXES if layout == "brats2021" else BRATS2023_SUFFIXES
    sep = "_" if layout == "brats2021" else "-"
    cases: list[Case] = []
    excluded: list[dict[str, str]] = []
    incomplete: list[str] = []
    seen: dict[str, Path] = {}
    for (folder, case_id), files in sorted(found[layout].items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        if case_id in seen:
            raise DataError(
                folder / files[next(iter(files))].name,
                f"case id {case_id} also found in {seen[case_id]}: the same case is present twice "
                "(extracted twice?); remove one copy",
            )
        seen[case_id] = folder
        missing = [f"{case_id}{sep}{s}" for s in suffixes if s not in files]
        if missing:
            reason = f"missing {', '.join(missing)} in {_rel(folder, root) or '.'}/"
            incomplete.append(f"{case_id}: {reason}")
            excluded.append({"case_id": case_id, "reason": reason})
            continue
        subject = case_id
        if layout == "brats2023":
            m = _TIMEPOINT_RE.match(case_id)
            subject = m["subject"] if m else case_id
        cases.append(
            Case(
                case_id=case_id,
                images={suffixes[s]: _rel(files[s], root) for s in suffixes},
                label=_rel(files["seg"], root) if "seg" in files else None,
                subject_id=subject,
            )
        )
    _check_complete(root, incomplete, bool(cases), skip_incomplete, f"{layout} case")
    return layout, cases, excluded


def _glob_to_regex(pattern: str, modalities: Sequence[str]) -> re.Pattern[str]:
    """Translate an ``--images-glob`` pattern with ``{case}``/``{modality}`` into a regex."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    mods = "|".join(re.escape(m) for m in sorted(modalities, key=len, reverse=True))
    while i < len(pattern):
        for token, group in (("{case}", "case"), ("{modality}", "modality")):
            if pattern.startswith(token, i):
                if group in seen:
                    out.append(f"(?P={group})")
                else:
                    out.append("(?P<case>[^/]+)" if group == "case" else f"(?P<modality>{mods})")
                    seen.add(group)
                i += len(token)
                break
        else:
            if pattern.startswith("**/", i):
                out.append("(?:[^/]+/)*")
                i += 3
            elif pattern.startswith("**", i):
                out.append(".*")
                i += 2
            elif pattern[i] == "*":
                out.append("[^/]*")
                i += 1
            elif pattern[i] == "?":
                out.append("[^/]")
                i += 1
            elif pattern[i] == "[" and "]" in pattern[i + 2 :]:  # glob class [abc], [!abc]
                end = pattern.index("]", i + 2)
                body = pattern[i + 1 : end]
                neg = body.startswith("!")
                body = (body[1:] if neg else body).replace("\\", "\\\\")
                if body.startswith("^"):  # literal in glob, negation in regex
                    body = "\\" + body
                out.append("[" + ("^" if neg else "") + body + "]")
                i = end + 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
    return re.compile("".join(out))


def _strip_nifti(name: str) -> str:
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def scan_folder(
    root: str | Path,
    images_glob: str,
    *,
    modalities: Sequence[str] | None = None,
    labels_dir: str | Path | None = None,
    label_suffix: str | None = None,
    skip_incomplete: bool = False,
) -> tuple[list[str], list[Case], list[dict[str, str]]]:
    """Find cases in a folder of NIfTI files. Returns ``(modalities, cases, excluded)``.

    ``images_glob`` is relative to ``root`` (``*``, ``?``, ``**/`` as in glob) and may contain
    two placeholders:

    * ``{case}``: one path component part, the case id. Without it the case id is the file name
      without ``.nii``/``.nii.gz`` (single modality only).
    * ``{modality}``: one of ``modalities``; needed for several modalities per case, e.g.
      ``--images-glob "{case}/{case}_{modality}.nii.gz" --modalities t1 t2``.

    Labels (optional, one of): ``labels_dir`` holds ``<case_id>.nii.gz`` (or ``.nii``, or a file
    named like the case's first image), e.g. nnU-Net's ``imagesTr``/``labelsTr``;
    ``label_suffix`` names the label next to the first image as ``<case_id><suffix>``
    (``--label-suffix _seg.nii.gz``). Files that are labels are never taken as images.
    """
    root = _check_root(root)
    if labels_dir is not None and label_suffix is not None:
        raise DataError(root, "give either labels_dir (--labels-dir) or label_suffix (--label-suffix), not both")
    has_mod = "{modality}" in images_glob
    if modalities is not None and len(modalities) == 0:
        modalities = None
    if has_mod and not modalities:
        raise DataError(root, f"--images-glob {images_glob!r} has {{modality}}: list the modalities with --modalities")
    if not has_mod and modalities is not None and len(modalities) > 1:
        raise DataError(
            root,
            f"{len(modalities)} modalities but --images-glob {images_glob!r} has no {{modality}} "
            "placeholder: write e.g. '{case}/{case}_{modality}.nii.gz'",
        )
    if has_mod and "{case}" not in images_glob:
        raise DataError(
            root, f"--images-glob {images_glob!r} has {{modality}} but no {{case}}: mark the case id, "
            "e.g. '{case}/{case}_{modality}.nii.gz'",
        )
    mods = list(modalities) if modalities else ["img"]
    _check_modality_names(mods, root)
    if Path(images_glob).is_absolute() or ".." in Path(images_glob).parts:
        raise DataError(root, f"--images-glob {images_glob!r} must be relative to the root, inside it")
    if label_suffix is not None and not re.search(rf"{_NIFTI_EXT}$", label_suffix):
        raise DataError(root, f"--label-suffix {label_suffix!r} must end in .nii.gz or .nii (e.g. _seg.nii.gz)")
    labels_abs: Path | None = None
    if labels_dir is not None:
        labels_abs = Path(labels_dir) if Path(labels_dir).is_absolute() else root / labels_dir
        if not labels_abs.is_dir():
            raise DataError(labels_abs, "--labels-dir is not a directory")
        try:
            labels_abs.resolve().relative_to(root.resolve())
        except ValueError:
            raise DataError(labels_abs, f"--labels-dir must be inside the data root {root}: manifest paths are relative to it") from None
        labels_abs = root / labels_abs.resolve().relative_to(root.resolve())

    rx = _glob_to_regex(images_glob, mods)
    glob = images_glob.replace("{case}", "*").replace("{modality}", "*")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob(glob)):
        if not path.is_file() or _hidden(path.name):
            continue
        if labels_abs is not None and labels_abs in path.parents:
            continue
        if label_suffix is not None and path.name.endswith(label_suffix):
            continue
        m = rx.fullmatch(_rel(path, root))
        if not m:
            continue
        case_id = m.groupdict().get("case") or _strip_nifti(path.name)
        mod = m.groupdict().get("modality") or mods[0]
        files = found.setdefault(case_id, {})
        if mod in files:
            raise DataError(
                path, f"case id {case_id!r} ({mod}) also matches {_rel(files[mod], root)}: case ids must be "
                "unique; put {case} where the id differs, e.g. '{case}/image.nii.gz'",
            )
        files[mod] = path
    if not found:
        raise DataError(root, f"no files match --images-glob {images_glob!r} (modalities {mods})")

    cases: list[Case] = []
    excluded: list[dict[str, str]] = []
    incomplete = []
    for case_id, files in sorted(found.items()):
        missing = [m for m in mods if m not in files]
        if missing:
            reason = f"no {', '.join(missing)} image"
            incomplete.append(f"{case_id}: {reason}")
            excluded.append({"case_id": case_id, "reason": reason})
            continue
        first = files[mods[0]]
        label: Path | None = None
        if labels_abs is not None:
            for name in (f"{case_id}.nii.gz", f"{case_id}.nii", first.name):
                if (labels_abs / name).is_file():
                    label = labels_abs / name
                    break
        elif label_suffix is not None:
            candidate = first.parent / f"{case_id}{label_suffix}"
            label = candidate if candidate.is_file() else None
        cases.append(
            Case(
                case_id=case_id,
                images={m: _rel(files[m], root) for m in mods},
                label=_rel(label, root) if label is not None else None,
            )
        )
    _check_complete(root, incomplete, bool(cases), skip_incomplete, "matched case")
    return mods, cases, excluded


def _check_complete(root: Path, incomplete: Sequence[str], any_complete: bool, skip_incomplete: bool,
                    what: str) -> None:
    """Refuse incomplete cases unless skipped, and a folder where none is complete."""
    if incomplete and not skip_incomplete:
        shown = "; ".join(incomplete[:5]) + (f"; ... ({len(incomplete)} in all)" if len(incomplete) > 5 else "")
        raise DataError(
            root,
            f"{len(incomplete)} incomplete case(s): {shown}. Restore the files, or pass "
            "--skip-incomplete (skip_incomplete=True) to leave these cases out",
        )
    if not any_complete:
        raise DataError(root, f"every {what} is incomplete: {'; '.join(incomplete[:5])}")


def _check_modality_names(modalities: Sequence[str], source: object) -> None:
    bad = [m for m in modalities if m in RESERVED_KEYS or not re.fullmatch(r"[A-Za-z0-9_.-]+", m)]
    if bad:
        raise DataError(
            source, f"modality name(s) {bad} not allowed: names are per-case keys, so they must be "
            f"simple words and not one of {sorted(RESERVED_KEYS)}",
        )
    if len(set(modalities)) != len(modalities):
        raise DataError(source, f"modalities has duplicates: {list(modalities)}")


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def make_manifest(
    cases: Sequence[Case],
    *,
    modalities: Sequence[str],
    source_layout: Layout,
    name: str,
    description: str = "",
    labels: Mapping[int, str] | None = None,
    label_convention: str = "custom",
    label_map: Mapping[int, int] | None = None,
    num_folds: int = 5,
    seed: int = 0,
    root_hint: str | None = None,
    excluded: Sequence[Mapping[str, str]] = (),
    unlabelled_split: Literal["training", "test"] = "test",
) -> dict[str, Any]:
    """Assemble a manifest dict (the JSON layout in the module docstring) from ``cases``.

    Cases with a label go to ``"training"`` with a fold; unlabelled cases go to
    ``unlabelled_split`` (``"test"`` without a fold, or ``"training"`` with one).
    """
    if num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")
    _check_modality_names(modalities, name)
    training: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for case in cases:
        item: dict[str, Any] = {"case_id": case.case_id}
        subject = case.subject_id or case.case_id
        if subject != case.case_id:
            item["subject_id"] = subject
        item["image"] = [case.images[m] for m in modalities]
        if case.label is not None:
            item["label"] = case.label
        item.update({m: case.images[m] for m in modalities})
        item["has_label"] = case.label is not None
        if case.label is not None or unlabelled_split == "training":
            item["fold"] = assign_fold(subject, num_folds, seed)
            training.append(item)
        else:
            test.append(item)
    labels_json = {str(k): v for k, v in sorted(labels.items())} if labels is not None else None
    manifest: dict[str, Any] = {
        "name": name,
        "description": description,
        "tensorImageSize": "3D",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": labels_json or {},
        "numTraining": len(training),
        "numTest": len(test),
        "medidiff": {
            "format_version": FORMAT_VERSION,
            "source_layout": source_layout,
            "modalities": list(modalities),
            "label_convention": label_convention,
            "labels": labels_json,
            "label_map": {str(k): int(v) for k, v in sorted((label_map or {}).items())},
            "num_folds": num_folds,
            "seed": seed,
            "fold_rule": FOLD_RULE,
            "created_by": f"medidiff {__version__}",
            "root_hint": root_hint,
            "excluded": [dict(e) for e in excluded],
        },
        "training": training,
    }
    if test:  # an empty "test" list crashes monai's load_decathlon_datalist
        manifest["test"] = test
    return manifest


def build_brats_manifest(
    root: str | Path,
    *,
    name: str | None = None,
    description: str | None = None,
    num_folds: int = 5,
    seed: int = 0,
    skip_incomplete: bool = False,
) -> dict[str, Any]:
    """Manifest of a BraTS 2021 or 2023+ release under ``root`` (layout auto-detected).

    Both map to modalities t1n, t1c, t2w, t2f and the medidiff label convention; 2021 manifests
    record ``label_map {"4": 3}`` (their enhancing tumour is 4), applied when labels are loaded.
    """
    root = _check_root(root)
    layout, cases, excluded = scan_brats(root, skip_incomplete=skip_incomplete)
    year = "2021" if layout == "brats2021" else "2023+"
    n_lab = sum(c.label is not None for c in cases)
    return make_manifest(
        cases,
        modalities=MODALITIES,
        source_layout=layout,
        name=name or root.name,
        description=description
        or f"BraTS {year} layout from {root.name}: {n_lab} labelled, {len(cases) - n_lab} unlabelled cases",
        labels=LABELS,
        label_convention="brats2023",
        label_map=BRATS2021_LABEL_MAP if layout == "brats2021" else {},
        num_folds=num_folds,
        seed=seed,
        root_hint=str(root),
        excluded=excluded,
    )


def build_folder_manifest(
    root: str | Path,
    images_glob: str,
    *,
    modalities: Sequence[str] | None = None,
    labels_dir: str | Path | None = None,
    label_suffix: str | None = None,
    label_values: Sequence[int] | None = None,
    name: str | None = None,
    description: str | None = None,
    num_folds: int = 5,
    seed: int = 0,
    skip_incomplete: bool = False,
) -> dict[str, Any]:
    """Manifest of a generic folder of NIfTI images (see :func:`scan_folder` for the pattern).

    ``label_values`` (e.g. ``[0, 1, 2]``) records the allowed label values for ``validate``;
    without labels options the data set is image-only and every case is a training case.
    """
    root = _check_root(root)
    mods, cases, excluded = scan_folder(
        root, images_glob, modalities=modalities, labels_dir=labels_dir,
        label_suffix=label_suffix, skip_incomplete=skip_incomplete,
    )
    has_labels = labels_dir is not None or label_suffix is not None
    labels = {int(v): f"label {int(v)}" for v in label_values} if label_values is not None else None
    return make_manifest(
        cases,
        modalities=mods,
        source_layout="generic",
        name=name or root.name,
        description=description or f"{len(cases)} cases matching {images_glob!r} under {root.name}",
        labels=labels,
        label_convention=("custom" if has_labels else "none"),
        label_map={},
        num_folds=num_folds,
        seed=seed,
        root_hint=str(root),
        excluded=excluded,
        unlabelled_split="test" if has_labels else "training",
    )


def write_manifest(manifest: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``manifest`` as indented JSON, atomically (never a half-written manifest)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Parse a manifest file; DataError (naming it) if missing, not JSON or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found (build one with `medidiff manifest build`)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, f"manifest must be a JSON object, got {type(data).__name__}")
    return data


def manifest_root(path: str | Path, root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else the folder containing the manifest."""
    return Path(root).expanduser().absolute() if root is not None else Path(path).absolute().parent


def label_map_of(manifest: Mapping[str, Any], source: object = "<manifest>") -> dict[int, int]:
    """``medidiff.label_map`` as ints (JSON keys are strings); {} when absent."""
    raw = (manifest.get("medidiff") or {}).get("label_map") or {}
    if not isinstance(raw, dict):
        raise DataError(source, f"medidiff.label_map must be an object like {{\"4\": 3}}, got {raw!r}")
    try:
        return {int(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(source, f"medidiff.label_map must map integers to integers, got {raw!r}") from None


def modalities_of(manifest: Mapping[str, Any]) -> list[str] | None:
    """``medidiff.modalities``, or None for a plain Decathlon datalist without our block."""
    mods = (manifest.get("medidiff") or {}).get("modalities")
    return list(mods) if isinstance(mods, list) else None


def _lexically_inside(rel: str) -> bool:
    return not os.path.isabs(rel) and not os.path.normpath(rel).startswith("..")


def load_manifest(
    path: str | Path, root: str | Path | None = None, split: Split = "training"
) -> list[dict[str, Any]]:
    """MONAI-ready items of ``split`` with absolute paths.

    Paths are joined to ``root``, which defaults to the directory containing the manifest file
    (so pass the data root for manifests kept in ``data_manifests/``). Every item keeps its
    ``case_id``, ``fold``, ``has_label`` as written; ``image``, ``label`` and the per-modality keys
    become absolute. Raises DataError naming the manifest for malformed JSON, an unknown or
    missing split, malformed items, and absolute or ``..`` paths (run ``medidiff manifest
    validate`` for a full check of the files themselves).
    """
    from monai.data import load_decathlon_datalist

    path = Path(path)
    data = read_manifest(path)
    splits = [k for k in ("training", "validation", "test") if k in data]
    if split not in ("training", "validation", "test"):
        raise DataError(path, f"unknown split {split!r}: use one of 'training', 'validation', 'test'")
    if split not in data:
        raise DataError(path, f"manifest has no {split!r} split (it has {splits or 'none'})")
    raw = data[split]
    if not isinstance(raw, list) or not raw:
        raise DataError(path, f"{split!r} must be a non-empty list of cases (an empty list crashes MONAI: omit the key)")
    mods = modalities_of(data) or []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "image" not in item:
            raise DataError(path, f"{split}[{i}] must be an object with an 'image' key, got {item!r:.80}")
        for key in (*_PATH_KEYS, *mods):
            values = item.get(key)
            for v in values if isinstance(values, list) else [values]:
                if v is None:
                    continue
                if not isinstance(v, str):
                    raise DataError(path, f"{split}[{i}].{key}: paths must be strings, got {v!r}")
                if not _lexically_inside(v):
                    raise DataError(
                        path, f"{split}[{i}].{key} = {v!r} is not relative to the data root "
                        "(absolute or '..'): manifests hold root-relative paths",
                    )
    base = manifest_root(path, root)
    try:
        items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=split, base_dir=base)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise DataError(path, f"MONAI could not read split {split!r}: {exc}") from exc
    out = []
    for item, original in zip(items, raw):
        fixed = dict(original)  # non-path keys exactly as written (see module docstring)
        for key in (*_PATH_KEYS, *mods):
            if key in original and original[key] is not None:
                if key in item and key in _PATH_KEYS:
                    fixed[key] = item[key]
                else:  # MONAI joins other keys only when the file exists: do it always
                    fixed[key] = os.path.normpath(os.path.join(base, original[key]))
        out.append(fixed)
    files = [f for it in out for key in _PATH_KEYS if it.get(key) is not None
             for f in (it[key] if isinstance(it[key], list) else [it[key]])]
    if files and not any(os.path.lexists(f) for f in files):
        raise DataError(path, missing_root_message(data, base, len(files), root_given=root is not None))
    for f in files:  # the data pipeline follows symlinks: only into the data root
        if os.path.lexists(f):
            confined_path(f, base)
    return out


def missing_root_message(manifest: Mapping[str, Any], base: Path, n_files: int, *, root_given: bool) -> str:
    """Why none of a manifest's files exist: almost always the wrong (or a missing) ``--root``."""
    msg = f"none of the {n_files} files exist under the data root {base}"
    if not root_given:
        msg += " (the default root is the manifest's folder: pass --root DATA_ROOT)"
    hint = (manifest.get("medidiff") or {}).get("root_hint") if isinstance(manifest.get("medidiff"), dict) else None
    if hint:
        msg += f"; the manifest was built from {hint}: pass --root {hint}"
    return msg


def split_folds(
    items: Sequence[Mapping[str, Any]], fold: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, val)``: items whose ``"fold"`` equals ``fold`` are the validation set."""
    folds = set()
    for item in items:
        f = item.get("fold")
        if isinstance(f, bool) or not isinstance(f, int):
            raise ValueError(
                f"case {item.get('case_id', '?')} has no integer 'fold' ({f!r}): split_folds needs "
                "'training' items from a medidiff manifest"
            )
        folds.add(f)
    if fold not in folds:
        raise ValueError(f"fold {fold} has no cases; the items have folds {sorted(folds)}")
    train = [dict(i) for i in items if i["fold"] != fold]
    val = [dict(i) for i in items if i["fold"] == fold]
    return train, val
