"""Session 62: does the sampler move the core's edge? Reads soft_masks.py's files (the same case seeds under
different samplers; the flow ODE maps one seed's noise to nearby cases) and prints per case log10 core / WT and
the ET's share of TC after generate's thresholding, and their medians. python sampler_core.py NAME=FILE.npz ..."""
import sys

import numpy as np

from medidiff.data.brats import regions_from_labels, regions_to_labels


def shares(masks):
    out = []
    for case in masks:
        r = regions_from_labels(regions_to_labels(case))
        wt, tc, et = r["WT"].sum(), r["TC"].sum(), r["ET"].sum()
        core = tc - et
        out.append((np.log10(core / wt) if core and wt else np.nan, et / tc if tc else np.nan, wt))
    return np.array(out)


sets = {a.split("=")[0]: shares(np.load(a.split("=")[1])["masks"]) for a in sys.argv[1:]}
n = min(len(v) for v in sets.values())
names = list(sets)
print("| case | " + " | ".join(f"{k}: log10 core / WT, ET / TC, WT voxels" for k in names) + " |")
print("|---|" + "---|" * len(names))
for i in range(n):
    print(f"| {i} | " + " | ".join(f"{v[i, 0]:.2f}, {v[i, 1]:.2f}, {v[i, 2]:.0f}" for v in sets.values()) + " |")
print("| median | " + " | ".join(f"{np.nanmedian(v[:n, 0]):.2f}, {np.nanmedian(v[:n, 1]):.2f}, {np.median(v[:n, 2]):.0f}"
                                  for v in sets.values()) + " |")
base = sets[names[0]][:n, 0]
for k in names[1:]:
    d = sets[k][:n, 0] - base
    print(f"- {k} - {names[0]}, log10 core / WT per case: median {np.nanmedian(d):+.3f}, "
          f"{int(np.nansum(d > 0))} of {int(np.isfinite(d).sum())} cases larger")
