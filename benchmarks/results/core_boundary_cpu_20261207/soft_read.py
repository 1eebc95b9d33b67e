"""Session 62: how soft are the shipped model's mask channels, and where? Reads soft_masks.py's file (continuous WT/TC/ET
channels in [-1, 1], threshold 0). Per tumour case: the width of each boundary (voxels with |channel| < 0.5 per
boundary voxel of the thresholded mask: a step edge of a {-1, 1} channel has none), the ET channel inside the
thresholded core (real: -1), and its value at TC's deepest voxel. python soft_read.py SOFT.npz"""
import sys

import numpy as np
from scipy import ndimage

m = np.load(sys.argv[1])["masks"]
print(f"{len(m)} cases (seeds 0..{len(m) - 1}); soft: |channel| < 0.5 within 3 voxels of WT")
print("| case | WT voxels | TC | core (TC, ET <= 0) | soft WT / TC / ET per boundary voxel | soft ET more than 2 voxels inside TC per "
      "ET-core boundary voxel | ET in the core: mean / max | ET at TC's deepest voxel | TC at it |")
print("|---|---|---|---|---|---|---|---|---|")


def boundary(mask):
    return (mask & ~ndimage.binary_erosion(mask)).sum()


for i, (wt, tc, et) in enumerate(m):
    W, T, E = wt > 0, tc > 0, et > 0
    if W.sum() == 0:
        print(f"| {i} | 0 | | | | | | | |")
        continue
    near = ndimage.binary_dilation(W, iterations=3)
    soft = [((np.abs(c) < 0.5) & near).sum() / max(boundary(c > 0), 1) for c in (wt, tc, et)]
    core = T & ~E
    depth_t = ndimage.distance_transform_edt(T)
    inner = (np.abs(et) < 0.5) & (depth_t > 2)  # away from TC's edge, where ET's outer boundary lies
    inner_b = (core & ndimage.binary_dilation(E & T)).sum()
    depth = depth_t
    deep = np.unravel_index(np.argmax(depth), depth.shape)
    cm = f"{et[core].mean():+.2f} / {et[core].max():+.2f}" if core.any() else "no core"
    print(f"| {i} | {W.sum()} | {T.sum()} | {core.sum()} | {soft[0]:.2f} / {soft[1]:.2f} / {soft[2]:.2f} | "
          f"{inner.sum() / max(inner_b, 1):.2f} | {cm} | {et[deep]:+.2f} (depth {depth[deep]:.1f}) | {tc[deep]:+.2f} |")
