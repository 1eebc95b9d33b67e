"""Per-case necrotic-core to enhancing-rim radius ratio from label maps, real against generated.

Two label-map estimates of r_nc / r_et (the tumour model draws it U(0.45, 0.70), medidiff/data/tumour.py):
  vol: (NCR voxels / TC voxels)^(1/3)           (level sets of one star-shaped field: volumes go as r^3)
  edt: max distance inside NCR / max distance inside TC (Euclidean distance transforms, mm)
Real cases carry the drawn radii in their seg.json (tumour.radius_mm): the estimates are checked against them.
Usage: radius_ratio.py REAL_DIR GEN_DIR
"""
import glob, json, sys
import numpy as np, nibabel as nib
from scipy import ndimage

def estimates(path):
    img = nib.load(path); a = np.asarray(img.dataobj); sp = img.header.get_zooms()[:3]
    ncr = a == 1; tc = (a == 1) | (a == 3)
    if tc.sum() == 0:
        return None
    v = (ncr.sum() / tc.sum()) ** (1 / 3)
    e_tc = ndimage.distance_transform_edt(tc, sampling=sp).max()
    e_nc = ndimage.distance_transform_edt(ncr, sampling=sp).max() if ncr.any() else 0.0
    return v, e_nc / e_tc, a.shape

def q(x):
    return " ".join(f"{p}%={np.percentile(x, p):.3f}" for p in (10, 25, 50, 75, 90))

real, truth, gen = [], [], []
for f in sorted(glob.glob(f"{sys.argv[1]}/*/*-seg.nii.gz")):
    meta = json.load(open(f.replace(".nii.gz", ".json")))
    if not meta.get("has_tumour"):
        continue
    e = estimates(f)
    if e is None:
        continue
    r = meta["tumour"]["radius_mm"]; real.append(e[:2]); truth.append(r["NCR"] / r["ET"])
for f in sorted(glob.glob(f"{sys.argv[2]}/*/case_*/seg.nii.gz")):
    e = estimates(f)
    if e is not None:
        gen.append(e[:2]); shape = e[2]
real, truth, gen = np.array(real), np.array(truth), np.array(gen)
print(f"real cases with TC: {len(real)}; generated: {len(gen)} (grid {shape})")
print(f"drawn r_nc/r_et (real json):  {q(truth)}")
for i, name in enumerate(("vol", "edt")):
    c = np.corrcoef(real[:, i], truth)[0, 1]
    print(f"{name}: real  {q(real[:, i])}  (corr with drawn {c:.2f}, median est/drawn {np.median(real[:, i] / truth):.3f})")
    print(f"{name}: gen   {q(gen[:, i])}")
    from scipy.stats import wasserstein_distance, mannwhitneyu
    print(f"{name}: W1 real-gen {wasserstein_distance(real[:, i], gen[:, i]):.3f}, Mann-Whitney p {mannwhitneyu(real[:, i], gen[:, i]).pvalue:.2g}")
    print(f"{name}: share with no core: real {(real[:, i] == 0).mean():.3f} gen {(gen[:, i] == 0).mean():.3f}")
    # median and its bootstrap interval (resampling cases)
    rng = np.random.default_rng(0)
    for lab, x in (("real", real[:, i]), ("gen", gen[:, i])):
        b = [np.median(rng.choice(x, len(x))) for _ in range(2000)]
        print(f"   {name} {lab} median {np.median(x):.3f} [{np.percentile(b, 2.5):.3f}, {np.percentile(b, 97.5):.3f}]")
for i, name in enumerate(("vol", "edt")):
    for lab, x in (("real", real[:, i]), ("gen", gen[:, i])):
        print(f"{name} {lab}: share < 0.45 {(x < 0.45).mean():.3f}, share > 0.60 {(x > 0.60).mean():.3f}, max {x.max():.3f}")
