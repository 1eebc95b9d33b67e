"""Session 60. Real t1c on the shipped scale (percentiles 0.5/99.5 over the brain outside the tumour -> -1 / 0): how much of each region passes +1 (the clip)?"""
import json
import numpy as np, nibabel as nib
def load(p): return np.asarray(nib.load(p).dataobj, dtype=np.float32)
fr = {1: [], 2: [], 3: []}; q = {1: [], 2: [], 3: []}
MANIFEST = "/work/s53/lease/quality_scale/manifest.json"  # the first 64 training-fold cases (fold != 0), as et_stats.py
train_ids = sorted(it["case_id"] for it in json.load(open(MANIFEST))["training"] if it.get("fold") != 0)
for d in (f"/work/s53/anat1536/{c}" for c in train_ids[:64]):
    n = d.split("/")[-1]; seg = load(f"{d}/{n}-seg.nii.gz"); x = load(f"{d}/{n}-t1c.nii.gz")
    brain = x != 0; ref = brain & (seg == 0)
    lo, hi = np.percentile(x[ref], [0.5, 99.5]); y = (x - lo) / (hi - lo) - 1
    for lab in (1, 2, 3):
        m = seg == lab
        if m.sum() > 5: fr[lab].append((y[m] > 1).mean()); q[lab].append(np.percentile(y[m], [50, 95]))
for lab, name in ((1, "NCR"), (2, "ED"), (3, "ET")):
    print(name, "share above +1: median %.3f max %.3f" % (np.median(fr[lab]), np.max(fr[lab])), "median of case p50/p95:", np.median(np.array(q[lab]), 0).round(3))
