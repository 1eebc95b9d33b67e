"""Which of the shipped model's 48 cases the unlabelled-tumour check flags on the corrected scale
(fidelity_new/report.json's per-case volumes away from the label against the check's thresholds), beside each
case's label size (its written seg.nii.gz), and how many of the set's cases have no tumour label.

    python flagged.py /work/s46/gen48_tail0 > flagged.txt
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
folder = Path(sys.argv[1])
f = json.loads((HERE / "fidelity_new/report.json").read_text())["results"]["fidelity"]
regions = f["unlabelled_tumour"]["regions"]
thr = np.array([v["threshold_ml"] for v in regions.values()])
away = np.asarray(f["per_case"]["away_ml"]).mean(0)  # (N, R), mean over seeds (one here)
print("thresholds (mL, the real held-out cases' 95 % quantile):", dict(zip(regions, thr.round(1))))
free = []
for i, cid in enumerate(f["per_case"]["case_ids"]):
    wt = int((np.asarray(nib.load(folder / cid / "seg.nii.gz").dataobj) > 0).sum())
    if wt == 0:
        free.append(cid)
    if (away[i] > thr).any():
        print(f"{cid}: flagged {dict(zip(regions, (away[i] > thr).tolist()))}, away mL {away[i].round(1).tolist()}, "
              f"label WT voxels {wt}")
print(f"cases without a tumour label: {len(free)} of {len(away)}: {free}")
