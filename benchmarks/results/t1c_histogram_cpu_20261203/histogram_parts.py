"""Where the brain intensity histograms of the shipped model differ from real (issue 16; CPU, 2026-12-03).

Every 2 mm run misses the realism check's histogram rule in every modality, t1c the most (W1 0.16-0.27 on the
[-1, 1] scale, 7-17x the floor; the brain-mask variant too, whose outside is exactly 0, so not the haze). Each case
goes through the evaluation pipeline (ScaleBrainPercentilesd: per case and modality, the brain's 0.5-99.5th
percentiles -> [-1, 1]), so a case's bright tail sets where its normal brain lands. This splits the W1 of the
brain voxels (realism.brain_histogram_distance's pooling and scale) into the tumour (WT) and the rest, and
reads per case where the normal brain's median sits and what holds the top 0.5 %.

    python histogram_parts.py CONFIG MANIFEST ROOT GENERATED N_REAL > parts.json
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval.realism import _unit, brain_histogram_distance, brain_masks  # noqa: E402

config, manifest, root, generated, n_real = sys.argv[1:6]
real = _RealCases(Path(config), Path(manifest), Path(root), int(n_real))
syn = real.synthetic(Path(generated))
sets = {"synthetic": syn, "real_train": real.train, "real_heldout": real.heldout}
mods = list(real.dcfg.modalities)


def parts(cs):
    """Per modality: pooled brain voxels in [-1, 1] (for the quantiles); per case the normal brain's median and
    the share of the case's top 0.5 % brain voxels inside WT. Also the brain masks: all, outside WT, inside WT."""
    x = cs.images.numpy()
    brains = brain_masks(x)
    wt = cs.labels[:, 0].numpy().astype(bool)
    cs.masks = {"all": brains, "normal": brains & ~wt, "tumour": brains & wt}
    out = {m: {"all": [], "normal": [], "tumour": [], "normal_median": [], "top_in_wt": [], "has_tumour": [],
               "et_voxels": [], "et_median": []} for m in mods}
    et = cs.labels[:, 2].numpy().astype(bool)
    for i in range(len(x)):
        u = _unit(x[i]) * 2 - 1
        b = brains[i]
        for c, m in enumerate(mods):
            v = u[c]
            out[m]["all"].append(v[b])
            out[m]["normal_median"].append(float(np.median(v[b & ~wt[i]])))
            top = v >= np.quantile(v[b], 0.995)
            out[m]["top_in_wt"].append(float((top & b & wt[i]).sum() / max(1, (top & b).sum())))
            out[m]["has_tumour"].append(bool(wt[i].any()))
            out[m]["et_voxels"].append(int((b & et[i]).sum()))
            out[m]["et_median"].append(float(np.median(v[b & et[i]])) if (b & et[i]).any() else float("nan"))
    return out


p = {k: parts(v) for k, v in sets.items()}


def w1(a, b, part):
    """(C,) the realism check's W1 (medidiff.eval.realism.brain_histogram_distance) on one part of the brain."""
    return brain_histogram_distance(sets[a].images, sets[a].masks[part], sets[b].images, sets[b].masks[part])


w = {(side, part): w1(side, "real_train", part) for side in ("synthetic", "real_heldout")
     for part in ("all", "normal", "tumour")}
res = {"cases": {k: len(v) for k, v in sets.items()}, "per_modality": {}}
for c, m in enumerate(mods):
    s, r, h = p["synthetic"][m], p["real_train"][m], p["real_heldout"][m]
    q = lambda d: [round(float(x), 3) for x in np.quantile(np.concatenate(d["all"]), [0.05, 0.25, 0.5, 0.75, 0.95])]  # noqa: E731
    res["per_modality"][m] = {
        "w1_all": float(w["synthetic", "all"][c]), "w1_all_floor": float(w["real_heldout", "all"][c]),
        "w1_normal_brain": float(w["synthetic", "normal"][c]), "w1_normal_floor": float(w["real_heldout", "normal"][c]),
        "w1_tumour": float(w["synthetic", "tumour"][c]), "w1_tumour_floor": float(w["real_heldout", "tumour"][c]),
        "tumour_share_of_brain_voxels": {k: round(float(v.masks["tumour"].sum() / v.masks["all"].sum()), 4)
                                         for k, v in sets.items()},
        "quantiles_5_25_50_75_95": {"synthetic": q(s), "real_train": q(r), "real_heldout": q(h)},
        "normal_brain_median_per_case": {k: {"mean": round(float(np.mean(d[m]["normal_median"])), 3),
                                             "with_tumour": round(float(np.mean([v for v, t in zip(d[m]["normal_median"], d[m]["has_tumour"]) if t] or [np.nan])), 3),
                                             "without": round(float(np.mean([v for v, t in zip(d[m]["normal_median"], d[m]["has_tumour"]) if not t] or [np.nan])), 3)}
                                         for k, d in p.items()},
        "top_half_percent_in_wt": {k: round(float(np.mean([v for v, t in zip(d[m]["top_in_wt"], d[m]["has_tumour"]) if t] or [np.nan])), 3)
                                   for k, d in p.items()},
        # per case: (ET voxels, ET median, normal brain median): does the normal brain's level follow the ET?
        "per_case_et_voxels_et_median_normal_median": {
            k: [[e, round(em, 3), round(nm, 3)] for e, em, nm in zip(d[m]["et_voxels"], d[m]["et_median"], d[m]["normal_median"])]
            for k, d in p.items()},
    }
print(json.dumps(res, indent=1))
