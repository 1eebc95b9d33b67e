"""Real cases from a manifest and synthetic cases from a ``medidiff generate`` folder, on ONE grid.

Both go through the same :mod:`medidiff.data.transforms` pipeline with the same
:class:`~medidiff.data.config.DataConfig` (RAS, spacing, brain crop, per-modality percentile
scaling to [-1, 1] with background -1, pad/crop to ``roi``, downsample), so a real and a synthetic
case are compared voxel for voxel and intensity for intensity. Labels come out as WT/TC/ET region
channels whatever ``data.label_mode`` the experiment trained with (evaluation is region-based).

Synthetic layout (what ``medidiff generate`` writes)::

    GEN_DIR/case_0000/{t1n,t1c,t2w,t2f}.nii.gz   # (x+1)/2 in [0, 1], background ~0
    GEN_DIR/case_0000/seg.nii.gz                 # labels 0..3 (label-generating or mask-conditioned models)
    GEN_DIR/case_0000/provenance.json            # optional

or any other ``generate --layout`` (BraTS 2023/2021 folders, an nnU-Net data set), whose finished
cases are read through :mod:`medidiff.layouts`.

Generated background is close to 0 but rarely exactly 0, while the pipeline's brain mask is "any
modality non-zero" (true of skull-stripped BraTS). :class:`ZeroBackgroundd` therefore sets voxels
whose every modality is below ``background`` to exactly 0 before the shared pipeline runs, so the
brain crop and the percentile scaling see the same kind of mask as for real data.

Processed cases are held in memory as one tensor per set: (N, C, *roi // downsample) float32 images
(4 x 128^3 is 32 MB a case) and (N, 3, ...) bool regions.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from monai.transforms import MapTransform

from medidiff.data.brats import BRATS2021_LABEL_MAP
from medidiff.data.config import DataConfig
from medidiff.data.mask_sources import file_sha256
from medidiff.data.manifest import label_map_of, load_manifest, manifest_root, read_manifest
from medidiff.data.transforms import (
    CheckValuesd,
    Pipeline,
    ScaleBrainPercentilesd,
    build_transforms,
)
from medidiff.errors import DataError, MedidiffError
from medidiff.layouts import CaseFiles, finished_cases
from medidiff.utils.threads import case_map

__all__ = [
    "CASE_RE",
    "CaseSet",
    "ZeroBackgroundd",
    "eval_data_config",
    "file_sha256",
    "real_items",
    "synthetic_items",
    "synthetic_transforms",
    "load_cases",
]

CASE_RE = re.compile(r"case_\d+")
LABEL_FILE = "seg.nii.gz"


@dataclass
class CaseSet:
    """Processed cases of one set.

    images: (N, C, X, Y, Z) float32 in [-1, 1]; labels: (N, 3, X, Y, Z) bool WT/TC/ET or None.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    case_ids: list[str]
    provenance: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: Sequence[int], name: str | None = None) -> CaseSet:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return CaseSet(
            name or self.name,
            self.images[idx],
            None if self.labels is None else self.labels[idx],
            [self.case_ids[i] for i in index],
            [self.provenance[i] for i in index] if self.provenance else [],
        )


def eval_data_config(cfg: DataConfig, intensity_scale: str = "brain") -> DataConfig:
    """The experiment's data config with region labels and no augmentation, on the evaluation's intensity
    scale (``EvalConfig.intensity_scale``): "brain" sets the percentiles over the whole brain with its top at +1
    (DataConfig's defaults), "config" keeps the experiment's keys."""
    if intensity_scale == "brain":  # DataConfig's own defaults: one definition of the brain scale
        default = DataConfig()
        cfg = replace(cfg, percentile_region=default.percentile_region, percentile_top=default.percentile_top)
    return replace(cfg, label_mode="regions", flip_prob=0.0)


def real_items(
    manifest: str | Path, root: str | Path | None, fold: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, int]]:
    """``(train, held_out, label_map)`` of the labelled cases of ``manifest``.

    ``held_out`` is fold ``fold`` (the fold a diffusion run with the same ``data.fold`` never
    saw); with ``fold=None`` every case is a training case and ``held_out`` is empty.
    """
    data = read_manifest(manifest)
    items = [it for it in load_manifest(manifest, manifest_root(manifest, root), "training") if it.get("label")]
    if not items:
        raise DataError(manifest, "no labelled cases under 'training': evaluation needs label maps of real cases")
    if fold is None:
        return items, [], label_map_of(data, manifest)
    folds = sorted({it.get("fold") for it in items if isinstance(it.get("fold"), int)})
    train = [it for it in items if it.get("fold") != fold]
    held = [it for it in items if it.get("fold") == fold]
    if not held or not train:
        raise DataError(
            manifest,
            f"data.fold={fold} leaves {len(train)} training and {len(held)} held-out cases (folds present: "
            f"{folds}); choose a fold with --set data.fold=K",
        )
    return train, held, label_map_of(data, manifest)


def seeded_indices(count: int, n: int | None, seed: int) -> list[int]:
    """At most ``n`` of ``range(count)``: a seeded random choice in increasing order (all when ``n`` is
    None or not smaller). The same ``count``, ``n`` and ``seed`` give the same choice, so a subset of
    loaded cases matches the subset :func:`seeded_subset` would have loaded."""
    if n is None or n >= count:
        return list(range(count))
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(count, n, replace=False).tolist())


def seeded_subset(items: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """At most ``n`` of ``items``: a seeded random choice kept in their order (all when ``n`` is None
    or not smaller)."""
    return [items[i] for i in seeded_indices(len(items), n, seed)]


def synthetic_items(
    gen_dir: str | Path, modalities: Sequence[str], *, max_cases: int | None = None
) -> list[dict[str, Any]]:
    """Manifest-like items of ``gen_dir/case_XXXX`` folders, sorted by name, or of the finished
    cases of a folder that ``generate --layout`` wrote in another layout (:mod:`medidiff.layouts`).

    Each item: ``{"image": [paths in modalities order], "label": seg path or absent, "case_id",
    "modalities", "provenance": dict}``. Raises DataError for a missing or empty folder and for
    cases that lack a modality (naming the file and what the case has instead).
    """
    gen = Path(gen_dir)
    if not gen.is_dir():
        raise DataError(gen, "synthetic folder not found (write one with `medidiff generate --out DIR`)")
    folders = sorted(p for p in gen.iterdir() if p.is_dir() and CASE_RE.fullmatch(p.name))
    if folders:  # medidiff's layout, provenance optional (sets other tools wrote in it)
        cases = [CaseFiles(case_id=c.name, images={m: c / f"{m}.nii.gz" for m in modalities}, label=c / LABEL_FILE,
                           provenance=c / "provenance.json", preview=c / "preview.png", folder=c) for c in folders]
    else:  # generate --layout brats|brats2021|nnunet: the finished cases
        try:
            cases = finished_cases(gen, modalities)
        except MedidiffError:
            raise DataError(gen, "no case_XXXX folders: expected the layout of `medidiff generate` "
                                 "(case_0000/{t1n,t1c,t2w,t2f,seg}.nii.gz), or the finished cases of a --layout "
                                 "brats, brats2021 or nnunet folder") from None
    if max_cases is not None:
        cases = cases[:max_cases]
    items = []
    for case in cases:
        missing = [m for m in modalities if not case.images[m].is_file()]
        if missing:
            have = sorted(p.name.split(".")[0] for p in case.images[missing[0]].parent.glob("*.nii*"))
            raise DataError(
                case.images[missing[0]],
                f"missing: data.modalities is {list(modalities)} but {case.case_id} has {have or 'no NIfTI files'}; "
                "evaluate with the config the model was trained with (--config)",
            )
        item: dict[str, Any] = {
            "image": [str(case.images[m]) for m in modalities],
            "case_id": case.case_id,
            "modalities": list(modalities),
        }
        if case.label.is_file():
            item["label"] = str(case.label)
        prov_file = case.provenance
        try:
            item["provenance"] = json.loads(prov_file.read_text()) if prov_file.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(prov_file, f"not valid JSON: {exc}") from exc
        if item["provenance"].get("label_convention") == "brats2021":
            item["label_map"] = dict(BRATS2021_LABEL_MAP)  # seg written with ET = 4: back to medidiff's 3
        items.append(item)
    return items


class ZeroBackgroundd(MapTransform):
    """(C, X, Y, Z): voxels whose every channel is below ``threshold`` become exactly 0."""

    def __init__(self, keys: str = "image", threshold: float = 0.01) -> None:
        super().__init__(keys)
        self.threshold = float(threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            background = (img < self.threshold).all(dim=0, keepdim=True)  # (1, X, Y, Z)
            d[key] = img * (~background).to(img.dtype)
        return d


def synthetic_transforms(cfg: DataConfig, *, background: float, with_label: bool) -> Pipeline:
    """The real-data pipeline with :class:`ZeroBackgroundd` just before the value checks, and the
    intensity scale taken over the written case's brain (``ScaleBrainPercentilesd(written=True)``:
    a generated background is near 0, not exactly 0 as a skull-stripped scan's)."""
    base = list(build_transforms(cfg, train=False, with_label=with_label).transforms)
    at = next(i for i, t in enumerate(base) if isinstance(t, CheckValuesd))
    base = base[:at] + [ZeroBackgroundd("image", background)] + base[at:]
    return Pipeline([_written(t) if isinstance(t, ScaleBrainPercentilesd) else t for t in base])


def _written(t: ScaleBrainPercentilesd) -> ScaleBrainPercentilesd:
    """A copy of the real pipeline's scaler (every setting kept) that reads a written case."""
    t = copy.copy(t)
    t.written = True
    return t


def load_cases(
    name: str,
    items: Sequence[Mapping[str, Any]],
    transform: Pipeline,
    *,
    with_label: bool,
    progress: bool = True,
    workers: int | None = None,
) -> CaseSet:
    """Run ``transform`` on every item and stack the results (see :class:`CaseSet`).

    ``workers`` threads run the pipeline on several cases at once (:func:`medidiff.utils.threads.case_map`:
    default the usable cores, at most 8; 0 or 1: one at a time; worker processes instead on hosts of 8+
    cores, as the training's memory cache does); the cases keep their order and the results are the same.
    """
    from tqdm.auto import tqdm

    if not items:
        raise ValueError(f"{name}: no cases to load")

    def run(item: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = transform({k: v for k, v in item.items() if k != "provenance"})
        image = torch.as_tensor(out["image"]).as_subclass(torch.Tensor).float()
        label = torch.as_tensor(out["label"]).as_subclass(torch.Tensor) > 0.5 if with_label else None
        return image, label

    images, labels, ids, prov = [], [], [], []
    with case_map(run, items, threads=workers, what=f"load {name}") as outs:
        for item, (image, label) in zip(items, tqdm(outs, total=len(items), desc=f"load {name}", unit="case",
                                                     disable=not progress, leave=False)):
            images.append(image)
            if label is not None:
                labels.append(label)
            ids.append(str(item.get("case_id", len(ids))))
            prov.append(dict(item.get("provenance", {})))
    return CaseSet(name, torch.stack(images), torch.stack(labels) if with_label else None, ids, prov)
