"""Throwaway: the outside haze by distance from the head (run in the folder haze.py wrote)."""
import glob

import nibabel as nib
import numpy as np
from scipy import ndimage

bins = ((1, 3), (3, 6), (6, 10), (10, 15), (15, 25), (25, 60))
print("mean value (u units, [0,1]) / share of voxels > 2e-3, by distance in voxels from the head; 4 cases each")
for var in ("gen_clip", "gen_noclip"):
    acc = {m: np.zeros((len(bins), 2)) for m in ("t1n", "t1c", "t2w", "t2f")}
    cases = sorted(glob.glob(var + "/case_*"))
    for c in cases:
        xs = {m: nib.load(f"{c}/{m}.nii.gz").get_fdata() for m in acc}
        s = ndimage.gaussian_filter(np.mean(list(xs.values()), 0), 1.0)
        head = ndimage.binary_fill_holes(s > 0.1)
        d = ndimage.distance_transform_edt(~head)
        for m, x in xs.items():
            for i, (lo, hi) in enumerate(bins):
                sel = (d >= lo) & (d < hi)
                acc[m][i] += (x[sel].mean(), (x[sel] > 2e-3).mean())
    print(var, " ".join(f"{lo}-{hi}" for lo, hi in bins))
    for m, a in acc.items():
        a /= len(cases)
        print(" ", m, " ".join(f"{v:.4f}/{f:.2f}" for v, f in a))
