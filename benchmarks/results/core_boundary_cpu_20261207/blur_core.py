"""Session 62: does a slightly soft mask channel explain the models' small necrotic cores? Real label maps (the
anatomy set's tumour cases at 2 mm) as WT/TC/ET channels in {0, 1}, each channel softened, thresholded at 0.5
(generate's rule: > 0 on [-1, 1]) and nested as regions_to_labels nests them (ET wins, then TC, then WT).
Softening: a Gaussian of sigma voxels, or the one-level Haar detail bands scaled by a (the latent's finest
bands). Prints per setting the core rows of evaluate's tumour statistics and log10 TC / WT, ET / TC.
python blur_core.py FOLDER (repository root, /tmp/venv)"""
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


def gauss(ch, s):
    return np.stack([ndimage.gaussian_filter(c, s) for c in ch]) if s else ch


def haar(ch, a):  # the one-level Haar transform with its 7 detail bands scaled by a: LLL (block mean) + a * rest
    c, x, y, z = ch.shape
    lll = ch.reshape(c, x // 2, 2, y // 2, 2, z // 2, 2).mean((2, 4, 6))
    up = np.repeat(np.repeat(np.repeat(lll, 2, 1), 2, 2), 2, 3)
    return up + a * (ch - up)


def relabel(ch):
    lab = regions_to_labels(ch - 0.5)  # > 0.5 as > 0
    return channels(lab)


def q(v):
    v = v[np.isfinite(v)]
    return " / ".join(f"{x:.2f}" for x in np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9]))


segs = [np.asarray(nib.load(p).dataobj).astype(np.int16)
        for p in sorted(glob.glob(f"{sys.argv[1]}/*/*-seg.nii.gz"))]
segs = [s for s in segs if (s > 0).any()]
base = [channels(s) for s in segs]
settings = [("as drawn", lambda c: c)] + [(f"gauss {s}", lambda c, s=s: gauss(c, s)) for s in (0.5, 0.6, 0.7, 0.85, 1.0)] \
    + [(f"haar detail x{a}", lambda c, a=a: haar(c, a)) for a in (0.75, 0.5, 0.25, 0.0)]
print(f"{len(segs)} real tumour cases from {sys.argv[1]}")
print("| softening | cores present | log10 core / WT: 10 / 25 / 50 / 75 / 90 % | log10 TC / WT: 10 / 25 / 50 / 75 / 90 % "
      "| log10 ET / TC: 10 / 25 / 50 / 75 / 90 % | ET % of TC (median) |")
print("|---|---|---|---|---|---|")
for name, f in settings:
    lab = np.stack([relabel(f(c)) for c in base])
    st = tumour_statistics(lab)
    wt, tc, et = (lab[:, k].reshape(len(lab), -1).sum(1) for k in range(3))
    ok = wt > 0
    tc_wt = np.log10(np.maximum(tc[ok], 1) / wt[ok])
    ok2 = tc > 0
    et_tc = np.log10(np.maximum(et[ok2], 1) / tc[ok2])
    print(f"| {name} | {st['core'][ok].sum()} of {ok.sum()} | {q(st['log_core_share'])} | {q(tc_wt)} | {q(et_tc)} "
          f"| {100 * 10 ** np.median(et_tc):.0f} |")
