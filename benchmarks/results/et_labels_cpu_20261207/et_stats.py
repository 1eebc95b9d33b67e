"""The ET follow-up (session 60): each tumour region's volume, the ET's share of the whole tumour, its components and
surface share, and t1c's median in each region against the normal brain's (in the normal brain's standard
deviations: unchanged by an affine intensity change), synthetic against the anatomy set's first N training-fold cases.
python et_stats.py N SYNTHETIC_DIR [estimated] (from the repository root in /tmp/venv; N = 64 here; "estimated":
the brain estimate alone as the mask, the first reading)."""
import glob
import json
import sys
import nibabel as nib, numpy as np
from scipy import ndimage
from medidiff.data.brain import estimated_brain_mask, written_brain_mask

MASK = written_brain_mask

MODS = ("t1n", "t1c", "t2w", "t2f")
def load(p): return np.asarray(nib.load(p).dataobj, dtype=np.float32)

def stats(seg, t1c, vols, voxml, written):
    # one brain mask for every set: written_brain_mask (the estimate and a threshold above the background: the
    # estimate alone takes in a shell of background at the edge, exact zeros in the raw real files but faint haze in
    # the written synthetic ones); ET_MASK=estimated reads with the estimate alone (the first reading)
    brain = MASK(np.stack(vols))
    normal = brain & (seg == 0)
    ref = np.median(t1c[normal]); sd = t1c[normal].std()
    out = {"wt_ml": float((seg > 0).sum() * voxml)}
    for lab, name in [(1, "ncr"), (2, "ed"), (3, "et")]:
        m = seg == lab
        out[f"{name}_ml"] = float(m.sum() * voxml)
        out[f"{name}_t1c_z"] = float((np.median(t1c[m]) - ref) / sd) if m.sum() > 5 else np.nan
        if written and m.sum() > 5:  # the written scale's ceiling (+1 on the model's scale)
            out[f"{name}_t1c_at_ceiling"] = float((t1c[m] >= 0.999).mean())
    et = seg == 3
    if et.sum() > 5:
        out["et_share"] = float(et.sum() / max((seg > 0).sum(), 1))
        out["et_ncomp"] = int(ndimage.label(et)[1])
        # ET as a rim: fraction of ET voxels touching non-tumour or NCR (a thin shell reads high)
        er = ndimage.binary_erosion(et)
        out["et_surface_frac"] = float(1 - er.sum() / et.sum())
    return out

SYN = sys.argv[2] if len(sys.argv) > 2 else "/work/s57/cpu/bf16_64"
if len(sys.argv) > 3 and sys.argv[3] == "estimated":
    MASK = estimated_brain_mask
rows = {"syn": [], "real": []}
for d in sorted(glob.glob(f"{SYN}/case_*"))[:64]:
    seg = load(f"{d}/seg.nii.gz"); z = nib.load(f"{d}/seg.nii.gz").header.get_zooms()
    rows["syn"].append(stats(seg, load(f"{d}/t1c.nii.gz"), [load(f"{d}/{m}.nii.gz") for m in MODS], np.prod(z) / 1000, True))
# real: the first N training-fold cases (fold != 0: the held-out fold is the utility reading's test set, and no
# statistic that shapes a synthetic set may come from it)
MANIFEST = "/work/s53/lease/quality_scale/manifest.json"
train_ids = sorted(it["case_id"] for it in json.load(open(MANIFEST))["training"] if it.get("fold") != 0)
reals = [f"/work/s53/anat1536/{c}" for c in train_ids[:int(sys.argv[1]) if len(sys.argv) > 1 else 64]]
for d in reals:
    n = d.split("/")[-1]
    segi = nib.load(f"{d}/{n}-seg.nii.gz")
    rows["real"].append(stats(load(f"{d}/{n}-seg.nii.gz"), load(f"{d}/{n}-t1c.nii.gz"), [load(f"{d}/{n}-{m}.nii.gz") for m in MODS], np.prod(segi.header.get_zooms()) / 1000, False))
print("real shape", segi.shape, segi.header.get_zooms())
keys = sorted(set(k for r in rows["syn"] + rows["real"] for k in r))
print(f"{'key':18s} {'syn median [q25,q75] (n)':34s} {'real median [q25,q75] (n)':34s}")
for k in keys:
    s = [r.get(k, np.nan) for r in rows["syn"]]; r_ = [r.get(k, np.nan) for r in rows["real"]]
    f = lambda v: (lambda a: "n/a" if a.size == 0 else f"{np.median(a):7.3f} [{np.percentile(a,25):7.3f},{np.percentile(a,75):7.3f}] ({len(a)})")(np.array([x for x in v if np.isfinite(x)]))
    print(f"{k:18s} {f(s):34s} {f(r_):34s}")
print("cases with ET: syn", sum(r.get('et_ml',0)>0 for r in rows['syn']), "real", sum(r.get('et_ml',0)>0 for r in rows['real']))
