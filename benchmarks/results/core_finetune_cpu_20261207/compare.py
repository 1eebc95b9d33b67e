"""Paired core / rim ratios at case seeds 0..11: the shipped model (session 62's soft_masks.npz channels, Heun 30,
thresholded as generate does) against the two 150-step fine-tunes (gen_control.json, gen_high.json).
python compare.py SOFT_MASKS.npz gen_control.json gen_high.json (repository root)"""
import json
import sys

import numpy as np

from medidiff.data.brats import regions_to_labels


def ratio(lab):
    tc = ((lab == 1) | (lab == 3)).sum()
    return float(((lab == 1).sum() / tc) ** (1 / 3)) if tc else float("nan")


shipped = [ratio(regions_to_labels(ch)) for ch in np.load(sys.argv[1])["masks"]]
arms = {a: [r["ratio"] if r["ratio"] is not None else float("nan") for r in json.load(open(p))]
        for a, p in zip(("control", "high"), sys.argv[2:])}
print("| seed | shipped | control fine-tune | high fine-tune |")
print("|---|---|---|---|")
for s in range(len(shipped)):
    print(f"| {s} | {shipped[s]:.3f} | " + " | ".join(f"{arms[a][s]:.3f}" if s < len(arms[a]) else "-" for a in arms) + " |")
sh = np.array(shipped)
for a, v in arms.items():
    v = np.array(v + [np.nan] * (len(sh) - len(v)))
    ok = np.isfinite(v) & np.isfinite(sh)
    d = v[ok] - sh[ok]
    print(f"\n{a} - shipped: {ok.sum()} paired cases with a TC in both, median {np.median(d):+.3f}, "
          f"{(d > 0).sum()} of {ok.sum()} higher; cases without a TC: {int((~np.isfinite(v)).sum())} "
          f"(shipped {int((~np.isfinite(sh)).sum())}); median ratio {np.nanmedian(v):.3f} (shipped {np.nanmedian(sh):.3f})")
if all(len(v) == len(sh) for v in arms.values()):
    c, h = (np.array(arms[a]) for a in ("control", "high"))
    ok = np.isfinite(c) & np.isfinite(h)
    d = h[ok] - c[ok]
    print(f"\nhigh - control: {ok.sum()} paired, median {np.median(d):+.3f}, {(d > 0).sum()} of {ok.sum()} higher")
