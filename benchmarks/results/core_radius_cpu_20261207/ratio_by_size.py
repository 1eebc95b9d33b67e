"""The per-case core / rim radius ratio (vol estimate of radius_ratio.py) by TC size (equivalent-sphere radius,
mm), real against generated: does the gap grow as tumours get smaller (a resolution effect at the latent's 4 mm)?
Usage: ratio_by_size.py REAL_DIR GEN_DIR"""
import glob, sys
import numpy as np, nibabel as nib

def read(path):
    img = nib.load(path); a = np.asarray(img.dataobj); vox = float(np.prod(img.header.get_zooms()[:3]))
    tc = ((a == 1) | (a == 3)).sum()
    if tc == 0:
        return None
    r_tc = (3 * tc * vox / (4 * np.pi)) ** (1 / 3)
    return r_tc, ((a == 1).sum() / tc) ** (1 / 3)

real = np.array([x for f in sorted(glob.glob(f"{sys.argv[1]}/*/*-seg.nii.gz")) if (x := read(f))])
gen = np.array([x for f in sorted(glob.glob(f"{sys.argv[2]}/*/case_*/seg.nii.gz")) if (x := read(f))])
edges = np.percentile(real[:, 0], [0, 33.3, 66.7, 100])
edges[0], edges[-1] = 0, np.inf
print(f"TC equivalent radius (mm) tercile edges of real: {edges[1]:.1f}, {edges[2]:.1f}")
print("| TC radius | real cases | real ratio median (10-90 %) | generated cases | generated ratio median (10-90 %) "
      "| (real - generated median ratio) x generated median TC radius, mm |")
print("|---|---|---|---|---|---|")
for lo, hi in zip(edges[:-1], edges[1:]):
    cells, med = [], []
    for x in (real, gen):
        sel = x[(x[:, 0] >= lo) & (x[:, 0] < hi)]
        s = sel[:, 1]
        med.append(np.median(s))
        cells += [str(len(s)), f"{np.median(s):.3f} ({np.percentile(s, 10):.3f}-{np.percentile(s, 90):.3f})" if len(s) else "-"]
    # the core edge's inward offset if the model kept the rim's outer edge and moved the inner one by a fixed distance
    cells.append(f"{(med[0] - med[1]) * np.median(sel[:, 0]):.1f}")
    print(f"| {lo:.1f}-{hi:.1f} | " + " | ".join(cells) + " |")
for name, x in (("real", real), ("generated", gen)):
    print(f"{name}: Spearman-like corr(ratio, TC radius) {np.corrcoef(np.argsort(np.argsort(x[:, 0])), np.argsort(np.argsort(x[:, 1])))[0, 1]:.2f}; TC radius median {np.median(x[:, 0]):.1f} mm")
