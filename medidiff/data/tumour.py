"""The one tumour model of medidiff's synthetic data sets (the phantom and the anatomy set).

A glioma-like lesion is three nested level sets of one irregular distance field ``d`` around a
centre: necrotic core (label 1) inside an enhancing rim (label 3) inside oedema (label 2), the
BraTS 2023 labels. Oedema is a solid zone plus finger-like spread along white matter (it follows
fibre tracts and stops at CSF and, mostly, at the cortex), and always a one-voxel ring round the
core, so ET and NCR never touch healthy tissue directly. The tumour pushes the healthy tissue
around it outward (mass effect): healthy anatomy is sampled nearer the centre through the radial
map ``rho -> rho (1 - m exp(-(rho/s)^2))``, which is monotone for ``m < 1``, so nothing folds.

Both data sets draw the shape with :func:`draw_tumour_shape` and label voxels with
:func:`tumour_regions`; they differ only in where they place the centre and in what tissue
classes their anatomy offers (a procedural head or the MNI152 template's probability maps).
Distances are in millimetres; ``voxel_mm`` converts the minimum thicknesses that keep all three
sub-regions present on coarse grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medidiff.data.fields import smooth_noise

__all__ = [
    "TumourShape",
    "draw_tumour_shape",
    "mass_effect_pull",
    "irregular_distance",
    "tumour_regions",
]


@dataclass(frozen=True)
class TumourShape:
    """Radii (mm) of the three sub-regions, mass-effect strength and the boundary's noise seed."""

    r_nc: float
    r_et: float
    r_ed: float
    mass: float  # 0..1: fraction by which healthy tissue at the centre is pulled in (pushed out)
    seed: int

    @property
    def s_mass(self) -> float:
        """Width (mm) of the mass effect: it fades over about one and a half rim radii."""
        return 1.5 * self.r_et


def draw_tumour_shape(rng: np.random.Generator, base_mm: float, voxel_mm: float = 1.0) -> TumourShape:
    """Draw radii relative to ``base_mm`` (the smallest brain semi-axis) and a mass effect.

    The draw order is fixed (oedema, rim, core, mass, seed) so data sets stay reproducible.
    Minimum thicknesses of 1.5-2 voxels keep all three sub-regions on tiny grids.
    """
    r_ed = float(rng.uniform(0.3, 0.5) * base_mm)
    r_et = float(rng.uniform(0.55, 0.8) * r_ed)
    r_nc = float(rng.uniform(0.45, 0.7) * r_et)
    r_nc = max(r_nc, 1.5 * voxel_mm)
    r_et = max(r_et, r_nc + 1.5 * voxel_mm)
    r_ed = max(r_ed, r_et + 2.0 * voxel_mm)
    mass = float(rng.uniform(0.2, 0.5))
    seed = int(rng.integers(0, 2**62))
    return TumourShape(r_nc=r_nc, r_et=r_et, r_ed=r_ed, mass=mass, seed=seed)


def mass_effect_pull(rho: np.ndarray, shape: TumourShape) -> np.ndarray:
    """Factor ``p`` such that healthy tissue at ``centre + off`` is sampled at ``centre + off (1 - p)``.

    ``rho`` is the distance (mm) from the tumour centre. Sampling nearer the centre displays the
    tissue further out: the tumour pushes its surroundings away.
    """
    return np.float32(shape.mass) * np.exp(-((rho / np.float32(shape.s_mass)) ** 2))


def irregular_distance(rho: np.ndarray, shape: TumourShape, voxel_mm: float = 1.0) -> np.ndarray:
    """Bumpy but star-shaped distance field: ``rho`` scaled by +-15 % smooth noise on its grid."""
    rng = np.random.default_rng(shape.seed)
    rough = smooth_noise(rng, rho.shape, max(3.0, shape.r_ed / (1.5 * voxel_mm)))
    return rho * (1.0 + 0.15 * np.tanh(rough))


def tumour_regions(
    d: np.ndarray,
    shape: TumourShape,
    *,
    brain: np.ndarray,
    inside: np.ndarray,
    csf: np.ndarray,
    gm: np.ndarray,
    wm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (necrotic core, enhancing rim, oedema) masks on the grid of ``d``.

    Args:
        d: irregular distance (mm) to the tumour centre (:func:`irregular_distance`).
        brain: the intracranial mask; the rim's shell and the oedema ring stay inside it.
        inside: where the tumour may grow (the brain minus a margin below its surface).
        csf, gm, wm: healthy tissue classes (after the mass effect); ``wm`` includes deep grey
            nuclei, which oedema crosses like white matter.
    """
    ncr = (d < shape.r_nc) & inside
    # The rim contains a one-voxel shell around the core, so the core never touches oedema.
    et = (((d < shape.r_et) & inside) | (ndimage.binary_dilation(ncr) & brain)) & ~ncr
    tc = ncr | et
    ring = ndimage.binary_dilation(tc) & brain & ~tc
    # Oedema: a solid zone, finger-like spread along white matter, and always a ring round TC.
    ed = (
        ((d < 0.5 * (shape.r_et + shape.r_ed)) & ~csf)
        | ((d < shape.r_ed) & ~csf & ~gm)
        | ((d < 1.3 * shape.r_ed) & wm)
    )
    ed = ((ed & inside) | ring) & ~tc
    return ncr, et, ed
