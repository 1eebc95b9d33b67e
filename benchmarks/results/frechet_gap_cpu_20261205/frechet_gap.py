"""What the shipped model's Frechet gap is made of, on the tracked feature net (issue 16; CPU, 2026-12-05).

The shipped joint model reads 24.1x the real-vs-real floor at 64 cases and the mask-conditioned second stage
21.6x (quality_scale_h200_20261205); frechet_parts_cpu_20261203 put modelled defects into real cases and found
t1c's level about half of an older net's distance. Here the generated cases are changed instead, and the real
held-out cases and the real training cases (the reference) the same way, so that each change's Frechet reads
against a floor changed alike:

* intensity calibration: each case's brain voxels mapped onto the pooled real training cases' distribution,
  per modality, over the whole brain or per region (normal brain, edema, necrotic core, enhancing tumour, from
  the case's own labels): what is left after it is structure (shape, texture, layout), not intensity;
* the tumour painted out (each tumour voxel set to the case's normal-brain median), alone and then calibrated:
  how much of the gap the tumours carry;
* the brain's outer two voxel layers removed, and every set blurred by a voxel, after calibration: what of
  the structure left is the surface shell and what is fine texture;
* the generated cases alone calibrated per region, the real sets as they are: what a post-hoc calibration of
  generate's output would read on the goal's own terms;
* a level-only version (each region's median moved to the pooled real median): level against histogram shape;
* one modality at a time calibrated per region: which modality's intensities the net reads, and (session 47) one
  modality's region levels alone moved: its levels against its histogram's shape;
* the Frechet split into its mean term and its covariance term, and per encoder stage (the net's features are
  the global averages of its four stages: 6, 12, 24 and 48 features);
* each generated case's influence (the jackknife's leave-one-out figures);
* (session 46, ../tail_frechet_cpu_20261206) the background cleared: every voxel outside the brain mask dilated
  by 2 (about the realism check's "outside") set to the case's outside median, alone and before calibration: how
  much of the gap the last sampling step's background speckle carries.

    python frechet_gap.py CONFIG MANIFEST ROOT FEATURE_NET GENERATED N_REAL [VARIANT ...] > gap.json
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval.image_metrics import frechet_distance_from_stats, frechet_jackknife  # noqa: E402
from medidiff.eval.realism import brain_masks  # noqa: E402

GEN_ONLY = "generated cases only per region calibrated (a post-hoc fix; the real sets as they are)"
LEVELS = np.linspace(0.0, 1.0, 1001)
DRAWS = 20


def regions(images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """(N, X, Y, Z) masks: the brain outside the tumour and the three tumour compartments (labels: WT, TC, ET)."""
    brain = brain_masks(images)
    wt, tc, et = (labels[:, k].bool().numpy() for k in range(3))
    return {"normal": brain & ~wt, "edema": wt & ~tc, "core": tc & ~et, "enhancing": et}


def pooled_quantiles(images: torch.Tensor, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Region -> (C, len(LEVELS)) quantiles of the real cases' voxels in that region, pooled over cases."""
    x = images.numpy()
    return {r: np.stack([np.quantile(x[:, c][m], LEVELS) for c in range(x.shape[1])]) for r, m in masks.items()}


def calibrate(images: torch.Tensor, masks: dict[str, np.ndarray], target: dict[str, np.ndarray],
              channels: list[int], *, level_only: bool = False) -> torch.Tensor:
    """Each case's voxels of each region mapped onto the target region's distribution (rank -> quantile), or
    only moved so that their median is the target's."""
    x = images.numpy().copy()
    for r, m in masks.items():
        for i in range(x.shape[0]):
            if m[i].sum() < 20:  # a compartment of a few voxels has no distribution to map
                continue
            for c in channels:
                v = x[i, c][m[i]]
                if level_only:
                    x[i, c][m[i]] = v + (target[r][c][500] - np.median(v))
                else:
                    p = (np.argsort(np.argsort(v)) + 0.5) / v.size
                    x[i, c][m[i]] = np.interp(p, LEVELS, target[r][c])
    return torch.from_numpy(x)


def paint_out_tumour(images: torch.Tensor, masks: dict[str, np.ndarray]) -> torch.Tensor:
    """Every tumour voxel set to its case's normal-brain median, per modality: the tumour's shape and look gone."""
    x = images.numpy().copy()
    tumour = masks["edema"] | masks["core"] | masks["enhancing"]
    for i in range(x.shape[0]):
        if tumour[i].any() and masks["normal"][i].any():
            for c in range(x.shape[1]):
                x[i, c][tumour[i]] = np.median(x[i, c][masks["normal"][i]])
    return torch.from_numpy(x)


def shell_removed(images: torch.Tensor, masks: dict[str, np.ndarray], layers: int = 2) -> torch.Tensor:
    """The brain's outer ``layers`` voxel layers set to the case's outside value (per modality): the surface
    shell where the generated brains carry their excess CSF-like voxels, gone from every set."""
    x = images.numpy().copy()
    brain = masks["brain"]
    for i in range(x.shape[0]):
        shell = brain[i] & ~ndimage.binary_erosion(brain[i], iterations=layers)
        outside = ~ndimage.binary_dilation(brain[i], iterations=2)
        for c in range(x.shape[1]):
            x[i, c][shell] = np.median(x[i, c][outside])
    return torch.from_numpy(x)


def background_cleared(images: torch.Tensor, masks: dict[str, np.ndarray]) -> torch.Tensor:
    """Every voxel outside the brain dilated by 2 set to the case's outside median (the background value), per
    modality: the speckle gone; real cases, whose outside is one value, stay as they are. The brain here is
    realism's image mask joined with the case's tumour labels, so it is background_stats's region less any label
    voxels outside the image mask."""
    x = images.numpy().copy()
    for i in range(x.shape[0]):
        outside = ~ndimage.binary_dilation(masks["brain"][i], iterations=2)
        for c in range(x.shape[1]):
            x[i, c][outside] = np.median(x[i, c][outside])
    return torch.from_numpy(x)


def blurred(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Every modality smoothed (sigma in voxels): the fine texture, where the generated cases are smoother, gone."""
    return torch.from_numpy(ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma, sigma)))


def split(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Frechet of feature rows a against b, its mean term, and per encoder stage."""
    out = {}
    d = a.shape[1] // 15  # init filters: stages of d, 2d, 4d, 8d features
    bounds = np.cumsum([0, d, 2 * d, 4 * d, 8 * d])
    for name, (lo, hi) in {"all": (0, a.shape[1]), **{f"stage{k}": (bounds[k], bounds[k + 1]) for k in range(4)}}.items():
        aa, bb = a[:, lo:hi], b[:, lo:hi]
        out[name] = frechet_distance_from_stats(aa.mean(0), np.cov(aa, rowvar=False), bb.mean(0), np.cov(bb, rowvar=False))
    out["mean_term"] = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    return out


def floor(held: np.ndarray, ref: np.ndarray, n: int) -> dict:
    rng = np.random.default_rng(0)
    runs = [split(held[np.sort(rng.choice(len(held), n, replace=False))], ref) for _ in range(DRAWS)]
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    med["frechet_range"] = [float(min(r["all"] for r in runs)), float(max(r["all"] for r in runs))]
    return med


def main() -> None:
    config, manifest, root, feature_dir, generated, n_real = sys.argv[1:7]
    only = sys.argv[7:]  # variant names to run (default: all)
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))  # (2: the CPU records' machine)
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n_real))
    syn = real.synthetic(Path(generated))
    mods = list(real.dcfg.modalities)
    spacing = [float(s) * real.dcfg.downsample for s in real.dcfg.spacing]
    train, held, gen = real.train.images.float(), real.heldout.images.float(), syn.images.float()
    model, recipe = feat.load_segmenter_features(feature_dir, modalities=mods, grid=list(held.shape[2:]), spacing=spacing)
    net = feat.SegmenterFeatures(model)
    m_train, m_held, m_gen = (regions(s.images.float(), s.labels) for s in (real.train, real.heldout, syn))
    target = pooled_quantiles(train, m_train)
    whole = {k: {"brain": m["normal"] | m["edema"] | m["core"] | m["enhancing"]} for k, m in
             (("train", m_train), ("held", m_held), ("gen", m_gen))}
    target_whole = pooled_quantiles(train, whole["train"])
    every = list(range(len(mods)))
    variants = {
        "as generated": lambda x, m, w: x,
        "whole brain calibrated, every modality": lambda x, m, w: calibrate(x, w, target_whole, every),
        "per region calibrated, every modality": lambda x, m, w: calibrate(x, m, target, every),
        "per region level only, every modality": lambda x, m, w: calibrate(x, m, target, every, level_only=True),
        "tumour painted out (normal-brain median)": lambda x, m, w: paint_out_tumour(x, m),
        "tumour painted out, then whole brain calibrated": lambda x, m, w: calibrate(paint_out_tumour(x, m), w,
                                                                                     target_whole, every),
        "whole brain calibrated, shell removed": lambda x, m, w: shell_removed(calibrate(x, w, target_whole, every), w),
        "whole brain calibrated, blurred 1 voxel": lambda x, m, w: blurred(calibrate(x, w, target_whole, every)),
        "whole brain calibrated, shell removed, blurred 1 voxel": lambda x, m, w: blurred(
            shell_removed(calibrate(x, w, target_whole, every), w)),
        "background cleared": lambda x, m, w: background_cleared(x, w),
        "background cleared, then whole brain calibrated": lambda x, m, w: calibrate(background_cleared(x, w), w,
                                                                                     target_whole, every),
        GEN_ONLY: lambda x, m, w: calibrate(x, m, target, every),
        **{f"per region calibrated, {mod} only": (lambda c: lambda x, m, w: calibrate(x, m, target, [c]))(c)
           for c, mod in enumerate(mods)},
        # (session 47) one modality's region medians alone moved: its levels against its histogram's shape
        **{f"per region level only, {mod} only": (lambda c: lambda x, m, w: calibrate(x, m, target, [c], level_only=True))(c)
           for c, mod in enumerate(mods)},
    }
    n = len(gen)
    out = {"feature_net": str(feature_dir), "feature_net_recipe": {k: recipe.get(k) for k in ("manifest_sha256", "fold", "seed")},
           "real_train": len(train), "real_heldout": len(held), "generated": n, "draws": DRAWS, "variants": {}}
    for name, change in variants.items():
        if only and name not in only and name != "as generated":
            continue
        real_change = (lambda x, m, w: x) if name == GEN_ONLY else change  # the post-hoc reading: real untouched
        f_ref = feat.extract_features(net, real_change(train, m_train, whole["train"])).numpy()
        fg = feat.extract_features(net, change(gen, m_gen, whole["gen"])).numpy()
        fh = feat.extract_features(net, real_change(held, m_held, whole["held"])).numpy()
        g, fl = split(fg, f_ref), floor(fh, f_ref, n)
        jk = frechet_jackknife(fg, f_ref)
        row = {"generated": g, "floor": fl, "ratio": g["all"] / fl["all"], "interval": jk["frechet_interval"]}
        if name == "as generated":
            loo = np.asarray(jk["frechet_leave_one_out"])
            order = np.argsort(loo)  # the cases whose removal lowers Frechet most
            row["influence"] = [{"case": syn.case_ids[i],
                                 "frechet_without": float(loo[i]), "wt_voxels": int(syn.labels[i, 0].sum())}
                                for i in order[:5]]
        out["variants"][name] = row
        print(f"{name}: {g['all']:.2f} [{jk['frechet_interval'][0]:.2f}, {jk['frechet_interval'][1]:.2f}] "
              f"floor {fl['all']:.2f} ratio {row['ratio']:.1f} mean term {g['mean_term']:.2f}/{fl['mean_term']:.2f} "
              f"stages {[round(g[f'stage{k}'], 2) for k in range(4)]} / {[round(fl[f'stage{k}'], 2) for k in range(4)]}",
              file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
