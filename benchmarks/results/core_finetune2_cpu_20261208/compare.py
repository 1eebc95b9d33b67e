"""Paired core / rim ratios at case seeds 0..11: the shipped model (session 62's soft_masks.npz channels, Heun 30,
thresholded as generate does) against each fine-tune's gen_ARM.json (gen_ratio.py), session 63's two beside this
session's. Each arm against the shipped model and against session 63's control (the same 150 steps, batches and
noise, unless the arm changes them).
python compare.py SOFT_MASKS.npz ARM=gen_ARM.json ... (repository root)"""
import json
import sys

import numpy as np

from medidiff.data.brats import regions_to_labels


def ratio(lab):
    tc = ((lab == 1) | (lab == 3)).sum()
    return float(((lab == 1).sum() / tc) ** (1 / 3)) if tc else float("nan")


def paired(a, b, what):
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    return f"{what}: {ok.sum()} paired, median {np.median(d):+.3f}, {(d > 0).sum()} of {ok.sum()} higher"


shipped = np.array([ratio(regions_to_labels(ch)) for ch in np.load(sys.argv[1])["masks"]])
arms = {}
for spec in sys.argv[2:]:
    name, path = spec.split("=", 1)
    v = [r["ratio"] if r["ratio"] is not None else np.nan for r in json.load(open(path))]
    arms[name] = np.array(v + [np.nan] * (len(shipped) - len(v)))
print("| seed | shipped | " + " | ".join(arms) + " |")
print("|---" * (len(arms) + 2) + "|")
for s in range(len(shipped)):
    print(f"| {s} | {shipped[s]:.3f} | " + " | ".join(f"{v[s]:.3f}" for v in arms.values()) + " |")
print()
print(f"- shipped: median {np.nanmedian(shipped):.3f}, cases without a TC {int(np.isnan(shipped).sum())}")
for name, v in arms.items():
    line = f"- {name}: median {np.nanmedian(v):.3f}, cases without a TC {int(np.isnan(v).sum())}; " + paired(v, shipped, "vs shipped")
    if name != "control" and "control" in arms:
        line += "; " + paired(v, arms["control"], "vs control")
    print(line)
