"""Session 61: is the shipped model's core small because TC is small or because ET takes its place? log10 TC / WT
and log10 ET / TC on the cases with a tumour, the shipped model's 64 CPU cases and the replaced model's 48 against
the anatomy set's first N training-fold cases (label maps alone). python tc_share.py N (repository root, /tmp/venv)"""
import glob
import json
import sys

import nibabel as nib
import numpy as np

N = int(sys.argv[1]) if len(sys.argv) > 1 else 192
items = json.load(open("/work/s53/lease/quality_scale/manifest.json"))["training"]
train = sorted(it["case_id"] for it in items if it.get("fold") != 0)[:N]


def shares(paths):
    tc_wt, et_tc = [], []
    for p in paths:
        seg = np.asarray(nib.load(p).dataobj).astype(np.int16)
        wt, tc, et = (seg > 0).sum(), np.isin(seg, (1, 3)).sum(), (seg == 3).sum()
        if wt:
            tc_wt.append(np.log10(max(tc, 1) / wt))
            if tc:
                et_tc.append(np.log10(max(et, 1) / tc))
    return np.array(tc_wt), np.array(et_tc)


sets = {"real (first N training-fold cases)": [f"/work/s53/anat1536/{c}/{c}-seg.nii.gz" for c in train],
        "shipped (64 CPU cases)": sorted(glob.glob("/work/s57/cpu/bf16_64/case_*/seg.nii.gz")),
        "replaced (48)": sorted(glob.glob("/work/s53/tissue/gen48/case_*/seg.nii.gz"))}
print("| set | tumours | log10 TC / WT: 10 / 25 / 50 / 75 / 90 % | log10 ET / TC: 10 / 25 / 50 / 75 / 90 % |")
print("|---|---|---|---|")
for name, paths in sets.items():
    a, b = shares(paths)
    q = lambda v: " / ".join(f"{x:.2f}" for x in np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9]))  # noqa: E731
    print(f"| {name} | {len(a)} | {q(a)} | {q(b)} |")
