"""Session 62: the real label maps with WT and TC softened as the shipped model's outer boundaries read (Gaussian
sigma 0.63 voxel: a continuum step's 0.85 voxels with |channel| < 0.5 per boundary voxel; not calibrated against
soft_read.py's measure on the grid) and ET softened more (sigma s), thresholded
at 0.5 and nested as generate nests them. Does a soft ET channel alone shrink the necrotic core as the models'
does? Also the soft-voxel width of the ET-core boundary per core-boundary voxel, as soft_read.py reads it on the
model's channels. python blur_et.py FOLDER (repository root, /tmp/venv)"""
import glob
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

from medidiff.data.brats import regions_from_labels, regions_to_labels
from medidiff.eval.realism import tumour_statistics


def channels(seg):
    r = regions_from_labels(seg)
    return np.stack([r["WT"], r["TC"], r["ET"]]).astype(np.float32)


def q(v):
    v = v[np.isfinite(v)]
    return " / ".join(f"{x:.2f}" for x in np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9]))


segs = [np.asarray(nib.load(p).dataobj).astype(np.int16) for p in sorted(glob.glob(f"{sys.argv[1]}/*/*-seg.nii.gz"))]
base = [channels(s) for s in segs if (s > 0).any()]
print(f"{len(base)} real tumour cases from {sys.argv[1]}")
print("| ET sigma (WT, TC 0.63) | soft ET-core width (median) | cores present | log10 core / WT: 10 / 25 / 50 / 75 / 90 % "
      "| log10 TC / WT | log10 ET / TC | ET % of TC (median) |")
print("|---|---|---|---|---|---|---|")
for s_et in (0.63, 1.0, 1.5, 2.0, 2.5):
    labs, widths = [], []
    for c in base:
        soft = np.stack([ndimage.gaussian_filter(c[0], 0.63), ndimage.gaussian_filter(c[1], 0.63),
                         ndimage.gaussian_filter(c[2], s_et)]) * 2 - 1
        lab = channels(regions_to_labels(soft))
        labs.append(lab)
        T, E = lab[1] > 0, lab[2] > 0
        core = T & ~E
        inner = (np.abs(soft[2]) < 0.5) & (ndimage.distance_transform_edt(T) > 2)
        nb = (core & ndimage.binary_dilation(E & T)).sum()
        if nb:
            widths.append(inner.sum() / nb)
    lab = np.stack(labs)
    st = tumour_statistics(lab)
    wt, tc, et = (lab[:, k].reshape(len(lab), -1).sum(1) for k in range(3))
    ok, ok2 = wt > 0, tc > 0
    tc_wt, et_tc = np.log10(np.maximum(tc[ok], 1) / wt[ok]), np.log10(np.maximum(et[ok2], 1) / tc[ok2])
    print(f"| {s_et} | {np.median(widths):.2f} | {st['core'][ok].sum()} of {ok.sum()} | {q(st['log_core_share'])} "
          f"| {q(tc_wt)} | {q(et_tc)} | {100 * 10 ** np.median(et_tc):.0f} |", flush=True)
