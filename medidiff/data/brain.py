"""Where a case's brain is, for the two kinds of volume the pipeline reads.

* A real skull-stripped scan (BraTS, the anatomy set): exactly 0 outside the brain, so the brain
  is the voxels where any modality is non-zero (:func:`medidiff.data.transforms.brain_mask`).
* A generated case as written (``medidiff generate``: ``(x + 1) / 2`` in [0, 1]): its background
  is near 0, not exactly 0 (96-99.5 % of each modality's voxels non-zero in the cases read), so
  "non-zero" is the whole volume. :func:`written_brain_mask` finds its brain instead. Taking a
  written case's intensity percentiles over the whole volume lifted the generated t1c normal-brain
  levels read by +0.35 and +0.45 on the [-1, 1] scale, and a real case written with a faint haze by
  +0.46 (benchmarks/results/brain_region_cpu_20261206).

:func:`estimated_brain_mask` is also the realism checks' brain estimator (medidiff.eval.realism).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["ABOVE_BACKGROUND", "estimated_brain_mask", "written_brain_mask"]

# A written voxel belongs to the brain only if some modality exceeds this fraction of the case's
# maximum (one threshold for every modality: a threshold per modality's own maximum would let a
# faint modality's haze in for all). On written [0, 1] cases it is 0.03: every real brain voxel of
# the anatomy set clears it (the real control reads the same scale with it as with "non-zero"), a
# faint haze (|N(0, 0.006)|) does not.
ABOVE_BACKGROUND = 0.03


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def estimated_brain_mask(case: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) -> (X, Y, Z) bool: the mean over modalities, Gaussian-smoothed (sigma 1 voxel),
    above the background level + 0.2 x (Otsu threshold - background level), holes filled, largest
    component (background level: the median below Otsu). Unchanged by an affine change of the
    intensities ([-1, 1] or [0, 1] alike), and by grain (smoothing, the largest component)."""
    s = ndimage.gaussian_filter(np.asarray(case, dtype=np.float64).mean(0), 1.0)
    if s.max() - s.min() < 1e-6 * max(1.0, float(np.abs(s).max())):
        return np.zeros(s.shape, dtype=bool)  # a constant volume has no brain
    t = _otsu(s.ravel())
    bg = float(np.median(s[s <= t]))
    # a fifth of the way from the background level to Otsu's: Otsu alone sits inside the dark
    # cortical rim and moves with intensity changes (a gamma-changed copy would get another box)
    m = ndimage.binary_fill_holes(s > bg + 0.2 * (t - bg))
    lab, n = ndimage.label(m)
    if n > 1:
        m = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return m


def written_brain_mask(case: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) non-negative intensities with background near 0 (a written generated case) ->
    (X, Y, Z) bool: :func:`estimated_brain_mask` and some modality above :data:`ABOVE_BACKGROUND`
    of the case's maximum. The estimate alone takes in a shell of background at the brain's edge
    (its smoothing: a clean real case's t1c level moved +0.014); the threshold alone takes in
    bright speckle. Together they keep a real case's scale whether it is written clean, with a
    faint haze or with speckle (to 0.001)."""
    x = np.asarray(case)
    return estimated_brain_mask(x) & (x > ABOVE_BACKGROUND * max(float(x.max()), 0.0)).any(0)
