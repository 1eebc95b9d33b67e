"""Factual text prompts for cases: from a manifest's ``text`` field, or written from the label map.

A case's prompt is its manifest item's ``text`` field when present (radiology reports, curated
captions). Otherwise :func:`build_prompt` writes one from what the label map and the geometry
say, and nothing else (no diagnosis, no guessed grade)::

    Brain MRI (T1, T1 post-contrast, T2, FLAIR). Tumour in the left frontal lobe; necrotic core
    1.2 ml, oedema 20.3 ml, enhancing tumour 3.4 ml.
    Brain MRI (T1, T1 post-contrast, T2, FLAIR). No tumour.

Facts (:func:`describe_case`):

* modalities, from the manifest's channel order (BraTS names become T1, T1 post-contrast, T2, FLAIR);
* tumour present when any voxel has a non-zero label;
* volume of each sub-region (NCR label 1, ED label 2, ET label 3; BraTS 2021's 4 is mapped to 3
  by the manifest's ``label_map``) in ml: voxel count x |det(affine[:3, :3])| mm^3 / 1000;
* hemisphere and a coarse lobe, from world (RAS, mm) coordinates given by the affine, so any
  voxel orientation (LPS-style BraTS files, RAS, oblique) gives the same answer.

Location heuristic (coarse, no atlas). Let ``c`` be the tumour core's centroid (labels 1 and 3;
the whole tumour's, label > 0, when there is no core: oedema spreads unevenly along white matter
and drags the whole-tumour centroid away from where the tumour sits) and ``m`` the brain mask's centroid, both in RAS mm. Hemisphere: right if ``c_x > m_x`` (RAS +x is the
patient's right), else left. We compare with the brain's own mid-sagittal position, never with
x = 0: BraTS/SRI24 affines (and the phantom's) put every world x <= 0. Lobe: with the brain's
bounding box in RAS, ``a = (c_y - centre_y) / half_extent_y`` (anterior +) and
``s = (c_z - centre_z) / half_extent_z`` (superior +); frontal if a > 0.2, occipital if
a < -0.3, otherwise parietal if s > 0.15 else temporal. These are the thresholds the phantom uses
to label its tumours (``medidiff.data.phantom._lobe``, in its head frame where the brain is the
unit ball). On real heads this is a rough sketch of lobar anatomy (the temporal lobe sits lower
and more lateral than a box can say): prompts built this way say "frontal lobe" as a coarse
position, not as an anatomical finding; give curated ``text`` fields for anything finer.

The brain mask is read from the first image channel (> 0: BraTS images are skull-stripped and
exactly 0 outside the brain) united with the label map; without a mask the grid's centre and
extent stand in (a warning is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medidiff.conditioning.config import PromptFact
from medidiff.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "MODALITY_NAMES",
    "REGION_NAMES",
    "ALL_FACTS",
    "CaseFacts",
    "describe_case",
    "build_prompt",
    "lobe_of",
    "case_prompt",
    "prompts_for_manifest",
    "add_prompts_to_manifest",
]

MODALITY_NAMES: dict[str, str] = {"t1n": "T1", "t1c": "T1 post-contrast", "t2w": "T2", "t2f": "FLAIR"}
# Sub-regions by medidiff label value (BraTS 2023 convention), in prompt order.
REGION_NAMES: dict[int, tuple[str, str]] = {1: ("NCR", "necrotic core"), 2: ("ED", "oedema"),
                                            3: ("ET", "enhancing tumour")}
ALL_FACTS: tuple[PromptFact, ...] = ("modalities", "location", "volumes")
Hemisphere = Literal["left", "right"]
Lobe = Literal["frontal", "parietal", "temporal", "occipital"]


@dataclass(frozen=True)
class CaseFacts:
    """What a case's label map and geometry say (every position in RAS mm)."""

    modalities: tuple[str, ...] = ()
    has_tumour: bool = False
    volumes_ml: dict[str, float] = field(default_factory=dict)  # NCR, ED, ET (0.0 when absent)
    hemisphere: Hemisphere | None = None
    lobe: Lobe | None = None
    tumour_centroid_mm: tuple[float, float, float] | None = None  # the core's (labels 1, 3), else WT's
    brain_centroid_mm: tuple[float, float, float] | None = None


def lobe_of(anterior: float, superior: float) -> Lobe:
    """Coarse lobe of a point at normalised anterior/superior position in the brain (see module doc)."""
    if anterior > 0.2:
        return "frontal"
    if anterior < -0.3:
        return "occipital"
    return "parietal" if superior > 0.15 else "temporal"


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Voxel indices (N, 3) -> RAS mm (N, 3)."""
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def describe_case(
    label: np.ndarray,
    affine: np.ndarray,
    *,
    brain_mask: np.ndarray | None = None,
    modalities: Sequence[str] = (),
) -> CaseFacts:
    """Facts of one case from its label map (X, Y, Z) ints (0 bg, 1 NCR, 2 ED, 3 ET) and affine (4, 4).

    ``brain_mask`` (X, Y, Z) bool locates the midline and the lobes; None = the whole grid.
    """
    label = np.asarray(label)
    affine = np.asarray(affine, dtype=np.float64)
    if label.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"describe_case needs a 3D label map and a 4x4 affine, got {label.shape} and {affine.shape}")
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    volumes = {key: round(float((label == v).sum()) * voxel_ml, 4) for v, (key, _) in REGION_NAMES.items()}
    tumour = label > 0
    if brain_mask is None:
        log.warning("no brain mask: the grid's centre stands in for the midline")
        brain = np.ones(label.shape, dtype=bool)
    else:
        brain = np.asarray(brain_mask, dtype=bool) | tumour
    brain_xyz = _world(affine, np.argwhere(brain).astype(np.float64))  # (N, 3)
    brain_c = brain_xyz.mean(axis=0)
    if not tumour.any():
        return CaseFacts(tuple(modalities), False, volumes, None, None, None, tuple(float(v) for v in brain_c))
    core = (label == 1) | (label == 3)
    where = core if core.any() else tumour
    tum_c = _world(affine, np.argwhere(where).astype(np.float64)).mean(axis=0)
    lo, hi = brain_xyz.min(axis=0), brain_xyz.max(axis=0)
    centre, half = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1e-6)
    rel = (tum_c - centre) / half  # (3,) in about [-1, 1]: right, anterior, superior
    return CaseFacts(
        modalities=tuple(modalities),
        has_tumour=True,
        volumes_ml=volumes,
        hemisphere="right" if tum_c[0] > brain_c[0] else "left",
        lobe=lobe_of(float(rel[1]), float(rel[2])),
        tumour_centroid_mm=tuple(round(float(v), 2) for v in tum_c),
        brain_centroid_mm=tuple(round(float(v), 2) for v in brain_c),
    )


def _ml(v: float) -> str:
    return f"{v:.1f}" if v >= 1.0 else f"{v:.2f}"


def build_prompt(facts: CaseFacts, *, include: Sequence[PromptFact] = ALL_FACTS) -> str:
    """A factual prompt from ``facts``; ``include`` chooses the sentences (modalities, location, volumes)."""
    unknown = set(include) - set(ALL_FACTS)
    if unknown:
        raise ValueError(f"unknown prompt facts {sorted(unknown)}: choose from {list(ALL_FACTS)}")
    parts: list[str] = []
    if "modalities" in include and facts.modalities:
        parts.append(f"Brain MRI ({', '.join(MODALITY_NAMES.get(m, m) for m in facts.modalities)}).")
    if not facts.has_tumour:
        parts.append("No tumour.")
        return " ".join(parts)
    sentence = "Tumour"
    if "location" in include and facts.hemisphere is not None:
        sentence += f" in the {facts.hemisphere} {facts.lobe} lobe"
    if "volumes" in include:
        vols = [f"{name} {_ml(facts.volumes_ml.get(key, 0.0))} ml" for key, name in REGION_NAMES.values()]
        sentence += "; " + ", ".join(vols)
    parts.append(sentence + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------------


def _load_case_arrays(item: Mapping[str, Any], label_map: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label after label_map, brain mask, affine) of a manifest item with absolute paths."""
    import nibabel as nib

    label_path = item.get("label")
    if not label_path:
        raise DataError(item.get("case_id", "?"), "has no label map to build a prompt from: add a 'text' field")
    img = nib.load(label_path)
    raw = np.asarray(img.dataobj).astype(np.int64)
    label = raw.copy()
    for src, dst in label_map.items():
        label[raw == int(src)] = int(dst)
    images = item.get("image") or []
    first = images[0] if isinstance(images, list) and images else images
    brain = np.asarray(nib.load(first).dataobj) > 0 if first else np.ones(label.shape, dtype=bool)
    if brain.shape != label.shape:
        raise DataError(first, f"image grid {brain.shape} differs from the label map's {label.shape}")
    return label, brain, np.asarray(img.affine)


def case_prompt(
    item: Mapping[str, Any],
    *,
    modalities: Sequence[str] = (),
    label_map: Mapping[int, int] | None = None,
    include: Sequence[PromptFact] = ALL_FACTS,
    source: Literal["auto", "manifest"] = "auto",
) -> str:
    """The prompt of one manifest item (absolute paths, as :func:`load_manifest` returns them).

    Its ``text`` field when present; otherwise built from its label map (``source='auto'``) or an
    error (``source='manifest'``).
    """
    text = item.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise DataError(item.get("case_id", "?"), f"'text' must be a string, got {type(text).__name__}")
        return text
    if source == "manifest":
        raise DataError(item.get("case_id", "?"), "has no 'text' field and conditioning.text.prompts is 'manifest'")
    label, brain, affine = _load_case_arrays(item, label_map or {})
    return build_prompt(describe_case(label, affine, brain_mask=brain, modalities=modalities), include=include)


def prompts_for_manifest(
    manifest_path: str | Path,
    root: str | Path | None = None,
    *,
    split: Literal["training", "test", "validation"] = "training",
    include: Sequence[PromptFact] = ALL_FACTS,
    source: Literal["auto", "manifest"] = "auto",
) -> dict[str, str]:
    """``{case_id: prompt}`` for every case of ``split`` (``root`` as in :func:`load_manifest`)."""
    from medidiff.data.manifest import label_map_of, load_manifest, modalities_of, read_manifest

    manifest = read_manifest(manifest_path)
    items = load_manifest(manifest_path, root, split)
    mods = modalities_of(manifest) or []
    lmap = label_map_of(manifest, manifest_path)
    return {str(it["case_id"]): case_prompt(it, modalities=mods, label_map=lmap, include=include, source=source)
            for it in items}


def add_prompts_to_manifest(
    manifest_path: str | Path,
    out_path: str | Path,
    root: str | Path | None = None,
    *,
    include: Sequence[PromptFact] = ALL_FACTS,
    overwrite: bool = False,
    builder: Callable[[CaseFacts], str] | None = None,
) -> dict[str, int]:
    """Write a copy of the manifest with a ``text`` field on every labelled case.

    Existing ``text`` fields are kept unless ``overwrite``. ``builder`` replaces
    :func:`build_prompt` (e.g. a shorter template). Returns counts ``{"written", "kept", "skipped"}``
    (skipped: cases without a label map). Proposed CLI: ``medidiff manifest prompts M -o M2
    [--root R] [--facts modalities location volumes] [--overwrite]``.
    """
    from medidiff.data.manifest import (
        label_map_of,
        manifest_root,
        modalities_of,
        read_manifest,
        write_manifest,
    )

    manifest = read_manifest(manifest_path)
    base = manifest_root(manifest_path, root)
    mods = modalities_of(manifest) or []
    lmap = label_map_of(manifest, manifest_path)
    make = builder or (lambda facts: build_prompt(facts, include=include))
    counts = {"written": 0, "kept": 0, "skipped": 0}
    for split in ("training", "validation", "test"):
        for item in manifest.get(split) or []:
            if item.get("text") is not None and not overwrite:
                counts["kept"] += 1
                continue
            if not item.get("label"):
                counts["skipped"] += 1
                continue
            absolute = dict(item, label=str(base / item["label"]),
                            image=[str(base / p) for p in item.get("image") or []])
            label, brain, affine = _load_case_arrays(absolute, lmap)
            item["text"] = make(describe_case(label, affine, brain_mask=brain, modalities=mods))
            counts["written"] += 1
    write_manifest(manifest, out_path)
    return counts
