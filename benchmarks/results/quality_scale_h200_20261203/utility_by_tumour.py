"""Utility Dice on the held-out cases with a tumour, from eval/<run>_utility/report.json (2026-12-03).

That report's means count each tumour-free test case as 1 (nothing predicted) or 0 (any false voxel):
33 of its 192 held-out cases. Its per-case scores hold no labels, so the tumour-free cases are read as those
where every one of the four segmenters scores WT Dice exactly 0 (a false voxel on an empty truth; a tumour
missed entirely by all four would look the same): 33, the count the fidelity phase's labels give for the same
seeded 192-case subset (eval/<run>_fidelity/report.md: "real held-out WT ... 0.000 on 33 without"). Bootstrap
over test cases only (one segmenter seed: seed-to-seed spread is not in these intervals).
    python utility_by_tumour.py > utility_by_tumour.json
"""
import json
import numpy as np

rep = "eval/x0_detail100_labels_lll100_skip005_seed0_utility/report.json"
sets = json.load(open(rep))["results"]["utility"]["training_sets"]
dice = {k: np.asarray(s["per_case"]["dice"][0]) for k, s in sets.items()}  # (N, 3): WT TC ET
free = np.all([d[:, 0] == 0 for d in dice.values()], axis=0)
rng = np.random.default_rng(0)


def interval(x):
    idx = rng.integers(0, len(x), (2000, len(x)))
    return [round(float(v), 4) for v in np.percentile(x[idx].mean(1), [2.5, 97.5])]


out = {"test_cases": int(len(free)), "tumour_free": int(free.sum()), "with_tumour": {}, "tumour_free_cases": {},
       "paired_with_tumour": {}}
for k, reg in enumerate(("WT", "TC", "ET")):
    for name, d in dice.items():
        x = d[~free, k]
        out["with_tumour"].setdefault(name, {})[reg] = {"dice_mean": round(float(x.mean()), 4), "ci95": interval(x)}
        # on a tumour-free case the Dice is 1 exactly when nothing of the region was predicted
        out["tumour_free_cases"].setdefault(name, {})[reg] = {"share_predicted_empty": round(float((d[free, k] == 1).mean()), 4)}
    for a, b in (("synthetic", "real_matched"), ("real+synthetic", "real")):
        x = dice[a][~free, k] - dice[b][~free, k]
        out["paired_with_tumour"].setdefault(f"{a} - {b}", {})[reg] = {
            "dice_mean": round(float(x.mean()), 4), "ci95": interval(x),
            "ratio": round(float(dice[a][~free, k].mean() / dice[b][~free, k].mean()), 4)}
print(json.dumps(out, indent=1))
