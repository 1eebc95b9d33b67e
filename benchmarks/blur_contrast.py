"""Would blur alone make an enhancing tumour read brighter? Real training cases blurred with a Gaussian of each
sigma, read paired against themselves unblurred (``paired_contrast``: the same label map on both sides) beside the
detail-coherence shift the blur makes (the realism check's reading: > 0 blur). Why: a mask-conditioned model's t2f
and t2w ET read 0.1-0.2 brighter than the real cases its masks came from (quality_scale_h200_20261204g, paired), and
its images are slightly blurred; in t2f the ET is a thin rim between a dark core and bright edema, so a blur could
smear the edema into it. If a blur of the model's coherence shift moves the ET by the model's overshoot, blur is the
mechanism; if it moves it far less, the overshoot is something else.

    python benchmarks/blur_contrast.py --config CONFIG --manifest MANIFEST [--root ROOT] --num 32 \\
        --sigmas 0.5 0.75 1 1.5 --out OUT

CONFIG: an experiment's config (its data section defines the evaluation grid and scales); only training-fold
cases are read. Writes OUT/blur_contrast.json and .md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_contrast import SCALES, paired_contrast, write_result  # noqa: E402
from quality_common import _RealCases  # noqa: E402


def blurred(images: Any, sigma: float) -> np.ndarray:
    """(N, C, X, Y, Z) -> the same with every channel Gaussian-blurred inside the brain only (sigma in voxels,
    spatial axes), by normalised convolution G(x m) / G(m): the background neither enters the brain's rim (which
    would darken it) nor is lifted. The brain: voxels where any channel is above its minimum (the background sits
    at every channel's minimum; a brain voxel the scale clipped to -1 in one channel is still brain)."""
    from scipy import ndimage

    x = np.asarray(images, dtype=np.float32)
    if sigma <= 0:
        return x.copy()
    lowest = x.reshape(*x.shape[:2], -1).min(-1)[..., None, None, None]
    brain = (x > lowest).any(1, keepdims=True)
    m = brain.astype(np.float32)
    spatial = (0, 0, sigma, sigma, sigma)
    num = ndimage.gaussian_filter(x * m, sigma=spatial)
    den = ndimage.gaussian_filter(m, sigma=spatial)  # (N, 1, ...): the one brain of every channel, broadcast
    return np.where(brain, num / np.maximum(den, 1e-6), x)


def coherence_shift(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(C,): mean detail coherence of ``images`` minus that of ``reference`` (the realism check's difference)."""
    from medidiff.eval.realism import brain_masks, detail_coherence

    return (np.nanmean(detail_coherence(images, brain_masks(images)), 0)
            - np.nanmean(detail_coherence(reference, brain_masks(reference)), 0))


def blur_contrast(images: Any, labels: Any, modalities: list[str], sigmas: list[float]) -> dict[str, Any]:
    """Per sigma: the coherence shift per modality and :func:`paired_contrast` of the blurred cases against the
    unblurred ones (same labels)."""
    real = np.asarray(images, dtype=np.float32)
    out: dict[str, Any] = {}
    for s in sigmas:
        b = blurred(real, s)
        out[str(s)] = {"coherence_shift": dict(zip(modalities, coherence_shift(b, real).tolist())),
                       "paired": paired_contrast(b, labels, real, labels, modalities)}
    return out


def table(result: dict[str, Any]) -> str:
    mods = result["modalities"]
    lines = ["| scale | sigma (voxels) | reading | " + " | ".join(mods) + " |", "|---" * (3 + len(mods)) + "|"]
    for scale, per_sigma in result["scales"].items():
        for s, r in per_sigma.items():
            lines.append(f"| {scale} | {s} | coherence shift (> 0 blur) | "
                         + " | ".join(f"{r['coherence_shift'][m]:+.3f}" for m in mods) + " |")
            for reading in ("et_contrast", "et_upper", "ed_contrast", "ncr_contrast"):
                cells = []
                for m in mods:
                    d = r["paired"][reading][m]["difference"]
                    cells.append(f"{d['mean']:+.3f} [{d['t95'][0]:+.3f}, {d['t95'][1]:+.3f}]"
                                 if d.get("t95") else "n/a")
                lines.append(f"| {scale} | {s} | {reading}, blurred - real | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.num < 2:
        raise SystemExit("--num must be >= 2 (an interval needs two cases)")
    from medidiff.cli.evaluate_cmd import load_eval_configs
    from medidiff.eval.data import real_items

    exp = load_eval_configs(str(args.config), None)[0]
    root = args.root or args.manifest.parent
    ids = [it["case_id"] for it in real_items(args.manifest, root, exp.data.fold)[0][:args.num]]
    modalities = list(exp.data.modalities)
    result: dict[str, Any] = {"config": str(args.config), "manifest": str(args.manifest), "cases": ids,
                              "modalities": modalities, "sigmas": args.sigmas, "scales": {}}
    for scale, overrides in SCALES.items():
        real = _RealCases(args.config, args.manifest, root, None, overrides(), train_ids=ids)
        result["scales"][scale] = blur_contrast(real.train.images, real.train.labels, modalities, args.sigmas)
    write_result(args.out, "blur_contrast", result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
