"""Which voxels should set a WRITTEN case's intensity scale when evaluate reads it (session 51; evaluate took each
case's 0.5-99.5th percentiles over its non-zero voxels, which for a generated case is the whole volume): the
non-zero voxels, some channel above tau (0.01, 0.03), realism's brain estimator, and the estimator with some channel
above tau. Per set (its first 16 cases): the normal-brain median per modality (t1n, t1c, t2w, t2f; outside WT
dilated 2 voxels; median over cases) as written and after each rescale. The real control
(../width_pair_cpu_20261206/written_real_control.py 16 /work/s51/real_control: 16 real training cases written as
generate writes a case) is read clean, with a faint haze (|N(0, 0.006)| on every background voxel: the shipped
model's background RMS) and with speckle (2 % of the background voxels at U(0.02, 0.3)).

    python regions.py /work/s51/real_control /work/s46/gen_tail0 /work/s46/gen48_tail1 \
        /work/s50/cpu/gen_x0_detail100_skip005_maskcond_seed1 > regions.txt
"""
import sys
from pathlib import Path
import numpy as np
from scipy import ndimage
sys.path.insert(0, "/work/main/benchmarks/results/width_pair_cpu_20261206")
from medidiff.eval.realism import brain_masks, _brain_mask_of
from ends import written
rng = np.random.default_rng(0)

def rescale(u, region):  # u (C, X, Y, Z) in [0, 1] as written; region (X,Y,Z) bool
    out = np.empty_like(u)
    for c in range(len(u)):
        lo, hi = np.percentile(u[c][region], [0.5, 99.5])
        out[c] = np.clip((u[c] - lo) / (hi - lo) * 2 - 1, -1, 1)
    return out

def levels(imgs, wts):
    masks = brain_masks(imgs)
    out = []
    for x, wt, brain in zip(imgs, wts, masks):
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        out.append([np.median(x[c][normal]) for c in range(len(x))])
    return np.median(np.asarray(out), 0).round(3)

def report(name, imgs, wts):
    u = (imgs + 1) / 2
    rows = {"as written": imgs}
    rows["nonzero"] = np.stack([rescale(x, (x != 0).any(0)) for x in u])
    for tau in (0.01, 0.03):
        rows[f"any>{tau}"] = np.stack([rescale(x, (x > tau).any(0)) for x in u])
    rows["estimator"] = np.stack([rescale(x, _brain_mask_of(x * 2 - 1)) for x in u])
    for tau in (0.001, 0.01, 0.03):
        rows[f"est&>{tau}"] = np.stack([rescale(x, _brain_mask_of(x * 2 - 1) & (x > tau).any(0)) for x in u])
    fr = np.mean([(x > 0.01).any(0).mean() for x in u]), np.mean([_brain_mask_of(x * 2 - 1).mean() for x in u]), np.mean([(x != 0).any(0).mean() for x in u])
    print(f"{name}: region fractions any>0.01 {fr[0]:.3f} estimator {fr[1]:.3f} nonzero {fr[2]:.3f}")
    for k, v in rows.items():
        print(f"  {k:11s}", levels(v, wts))

for arg in sys.argv[1:]:
    imgs, wts = written(Path(arg))
    imgs, wts = imgs[:16], wts[:16]
    report(arg, imgs, wts)
    if "control" in arg:
        u = (imgs + 1) / 2
        bg = (u == 0).all(1, keepdims=True)
        noisy = np.where(bg, np.abs(rng.normal(0, 0.006, u.shape)), u) * 2 - 1
        report(arg + " + faint background (|N(0, 0.006)|)", noisy.astype(np.float32), wts)
        sp = np.where(bg & (rng.random(u.shape) < 0.02), rng.uniform(0.02, 0.3, u.shape), u) * 2 - 1
        report(arg + " + speckle (2% of background voxels at U(0.02, 0.3))", sp.astype(np.float32), wts)
