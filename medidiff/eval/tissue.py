"""Tissue QC: do synthetic brains have real proportions of CSF, grey and white matter, and real
WM/GM contrast? (issue 14, on the anatomy data set)

Data: the anatomy data set (``medidiff data anatomy``) ships, beside each BraTS-2023-layout case
``CASE/CASE-{t1n,t1c,t2w,t2f,seg}.nii.gz``, a tissue map ``CASE/CASE-tissue.nii.gz`` (uint8: 0
background, 1 CSF, 2 GM, 3 WM; the tumour stays in ``seg``) with the same affine.
:func:`tissue_items` finds those maps; the evaluation runs them through the SAME data pipeline as
the images (as an integer label map: nearest resampling, block-majority downsampling), so a map
lies voxel for voxel on its case.

Method (an instrument, like the utility segmenter): a SegResNet is trained on the real training
cases' images -> tissue maps (a softmax over background, CSF, GM and WM: the classes exclude each
other; with a sigmoid per class, as the tumour regions use, CSF lost every voxel to GM and was
never predicted, even on real cases; the same epoch/plateau rule as
:func:`medidiff.eval.segmentation.train_segmenter`) and applied to the
synthetic images AND to the real held-out images. It depends on the real training cases alone, so
it can be trained once (:func:`medidiff.eval.train_tissue_net`, or the first evaluation given
``eval.tissue_net``), saved, and loaded by every evaluation of the same manifest and fold. The real reference is the held-out set seen
through the same instrument, so the instrument's own bias cancels; the ground-truth values of the
held-out cases are reported beside it, as a check on the instrument.

Per case:

* tissue volume fractions: voxels of CSF, GM, WM over all three;
* where the CSF is: its share of the brain's outer layers (``csf_share_surface``: depth 1-2 voxels from
  the brain's edge, the subarachnoid space and the partial-volume rim) and of its deep part
  (``csf_share_deep``: depth 6+, the ventricles). Why: every anatomy model read too much CSF, and
  nearly all of the shipped one's excess was a CSF-like shell at the surface with ventricles as real
  (benchmarks/results/csf_where_cpu_20261202/): the fraction alone cannot say which;
* WM/GM contrast per modality: Michelson contrast ``(m_WM - m_GM) / (m_WM + m_GM)`` of the mean
  intensities in ``u = (x+1)/2`` (T1: positive, WM brighter; T2/FLAIR: negative).

Per metric, the synthetic mean is compared with the real distribution: ``z = (mean_syn -
mean_real) / std_real`` and the fraction of synthetic cases inside the real [min, max]; it fails
when ``|z| > z_max`` (3: a check for gross deviations, such as a flipped contrast or missing
white matter; against 6 real phantoms, 4 fresh ones had z -2.4 on T1c contrast). Cannot show:
where the tissues are (a brain of real proportions can still be wrongly folded); with few real
cases std_real is itself uncertain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["TISSUE_CLASSES", "TISSUE_SUFFIX", "TISSUE_NET_KIND", "tissue_items", "load_tissue_maps", "tissue_onehot", "predict_tissue", "tissue_measures", "csf_by_depth",
           "compare_to_real"]

TISSUE_CLASSES: tuple[str, ...] = ("CSF", "GM", "WM")  # codes 1, 2, 3 of the tissue maps
TISSUE_SUFFIX = "-tissue.nii.gz"
TISSUE_NET_KIND = "medidiff.eval.tissue_segmenter"  # config.json kind of a saved tissue segmenter (eval.tissue_net)


def tissue_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Items whose ``label`` is the case's tissue map, or None unless EVERY case has one."""
    out = []
    for it in items:
        case_id = str(it.get("case_id", ""))
        path = Path(it["image"][0]).parent / f"{case_id}{TISSUE_SUFFIX}"
        if not case_id or not path.is_file():
            return None
        out.append({**{k: v for k, v in it.items() if k != "provenance"}, "label": str(path)})
    return out


def load_tissue_maps(items: Sequence[Mapping[str, Any]], transform: Any) -> torch.Tensor:
    """(N, X, Y, Z) uint8 tissue codes of :func:`tissue_items` through ``transform`` (the evaluation's
    pipeline built with ``label_mode="labels"`` and no label map: tissue codes are not BraTS labels)."""
    maps = [torch.as_tensor(transform(dict(it))["label"]).as_subclass(torch.Tensor) for it in items]
    return torch.stack([m.reshape(m.shape[-3:]).round().to(torch.uint8) for m in maps])


def tissue_onehot(maps: torch.Tensor) -> torch.Tensor:
    """(N, 1 or none, X, Y, Z) integer maps -> (N, 3, X, Y, Z) bool CSF/GM/WM."""
    m = maps.reshape(maps.shape[0], *maps.shape[-3:])
    return torch.stack([m == k for k in range(1, len(TISSUE_CLASSES) + 1)], 1)


def predict_tissue(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 2) -> torch.Tensor:
    """(N, C, X, Y, Z) -> (N, X, Y, Z) uint8 tissue codes: the most probable of background, CSF, GM
    and WM (the tissue segmenter is exclusive: a softmax over the four)."""
    from medidiff.eval.segmentation import predict

    onehot = predict(model, images, batch_size=batch_size, exclusive=True)  # (N, 3, ...) CSF/GM/WM
    codes = torch.arange(1, onehot.shape[1] + 1, dtype=torch.uint8).view(1, -1, *([1] * (onehot.ndim - 2)))
    return (onehot.to(torch.uint8) * codes).amax(1)


def tissue_measures(images: torch.Tensor, maps: torch.Tensor, modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Per case: ``{"fraction_CSF", "fraction_GM", "fraction_WM", "csf_share_surface", "csf_share_deep",
    "wm_gm_contrast_<mod>"}`` (N,)
    from (N, C, X, Y, Z) images in [-1, 1] and (N, X, Y, Z) tissue codes (nan where undefined)."""
    u = (images.double() + 1) / 2
    m = maps.reshape(maps.shape[0], -1)
    n = m.shape[0]
    out: dict[str, np.ndarray] = {}
    total = (m > 0).sum(1).double().clamp_min(1)
    for k, name in enumerate(TISSUE_CLASSES, start=1):
        out[f"fraction_{name}"] = ((m == k).sum(1).double() / total).numpy()
    out.update(csf_by_depth(maps))
    flat = u.reshape(n, u.shape[1], -1)
    for c, mod in enumerate(modalities):
        vals = np.full(n, np.nan)
        for i in range(n):
            wm, gm = flat[i, c][m[i] == 3], flat[i, c][m[i] == 2]
            if wm.numel() and gm.numel():
                a, b = float(wm.mean()), float(gm.mean())
                vals[i] = (a - b) / (a + b) if a + b > 0 else np.nan
        out[f"wm_gm_contrast_{mod}"] = vals
    return out


SURFACE_DEPTH = 2  # voxels: the brain's outer layers (depth 1-2 from its edge)
DEEP_DEPTH = 6  # voxels: the deep brain (depth 6+), where the ventricles are


def csf_by_depth(maps: torch.Tensor) -> dict[str, np.ndarray]:
    """Per case ``csf_share_surface`` and ``csf_share_deep``: the share of CSF among the brain voxels
    (tissue code > 0) at taxicab depth <= SURFACE_DEPTH and >= DEEP_DEPTH from the brain's edge (nan
    where a case has no such voxel)."""
    from scipy import ndimage

    surface, deep = np.full(len(maps), np.nan), np.full(len(maps), np.nan)
    for i, m in enumerate(maps.numpy()):
        depth = ndimage.distance_transform_cdt(m > 0, metric="taxicab")
        for out, sel in ((surface, (depth >= 1) & (depth <= SURFACE_DEPTH)), (deep, depth >= DEEP_DEPTH)):
            if sel.any():
                out[i] = float((m[sel] == 1).mean())
    return {"csf_share_surface": surface, "csf_share_deep": deep}


def compare_to_real(synthetic: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], *, z_max: float = 3.0
                    ) -> dict[str, Any]:
    """Per metric: real mean/std/min/max, synthetic mean/std, z, fraction of synthetic cases in the
    real range, pass (|z| <= z_max); a metric undefined on every real case is not a check (pass None)."""
    rows: dict[str, Any] = {}
    for key, r in real.items():
        s = np.asarray(synthetic[key], np.float64)
        r = np.asarray(r, np.float64)
        r, s = r[np.isfinite(r)], s[np.isfinite(s)]
        if r.size == 0:  # undefined on every real case (no brain voxel 6+ deep on a small grid): not a check here
            rows[key] = {"note": "not measured: undefined on every real case (no brain voxel at that depth, or none "
                                 "at all, in the segmenter's maps of the real cases)", "pass": None}
            continue
        if r.size < 2 or s.size < 1:
            rows[key] = {"note": f"needs >= 2 real and >= 1 synthetic values, got {r.size} and {s.size}", "pass": False}
            continue
        sd = float(r.std(ddof=1))
        z = (float(s.mean()) - float(r.mean())) / sd if sd > 0 else (0.0 if s.mean() == r.mean() else float("inf"))
        rows[key] = {"real_mean": float(r.mean()), "real_std": sd, "real_min": float(r.min()), "real_max": float(r.max()),
                     "synthetic_mean": float(s.mean()), "synthetic_std": float(s.std(ddof=1)) if s.size > 1 else 0.0,
                     "z": z, "in_real_range": float(((s >= r.min()) & (s <= r.max())).mean()),
                     "pass": bool(abs(z) <= z_max)}
    return {"metrics": rows, "failed": [k for k, v in rows.items() if v["pass"] is False],
            "rule": f"pass when |synthetic mean - real mean| <= {z_max} x real std"}
