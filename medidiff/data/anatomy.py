"""BraTS-like cases built from real anatomy: the MNI152 template, varied per case.

The phantom (:mod:`medidiff.data.phantom`) exercises code; it is not anatomy, so no model trained
on it can show whether it learns brains. This data set starts from the ICBM 2009a nonlinear
symmetric MNI152 template at 1 mm that nilearn's wheel ships as package data (T1, grey- and
white-matter probability maps; read from the installed package, never downloaded), and turns it
into a BraTS 2023 data set in the same layout as the phantom, so every command that takes one
takes the other.

Template copyright (reproduced in every case's provenance and in README.md): "Copyright (C)
1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
University. Permission to use, copy, modify, and distribute this software and its documentation
for any purpose and without fee is hereby granted, provided that the above copyright notice
appear in all copies. The authors and McGill University make no representations about the
suitability of this software for any purpose. It is provided "as is" without express or implied
warranty." (Fonov et al., NeuroImage 2009 and 2011; Collins et al. 1999.)

The model, per case:

* tissue maps from the template, partial volume kept: GM and WM probabilities as shipped, CSF =
  brain - GM - WM (clipped to [0, 1]); the brain is the template's skull-stripped T1 support;
* geometry: the MNI brain shrunk to an average adult size (MNI152 brains are larger than a typical
  subject's: 0.9 per axis gives ~1.4 l intracranial volume), then a random scale (about +-10 %,
  slightly anisotropic), rotation (about +-10 degrees per axis), a smooth large-scale nonlinear
  displacement (2.5 mm std, ~40 mm wavelength), ventricle enlargement (a radial zoom about the
  lateral ventricles, 0.9-1.6x, monotone so nothing folds), and a translation that centres the
  brain left-right and front-back and keeps the vertex inside the 155-slice field of view (the
  brainstem's lower end may leave it, as in BraTS);
* in most cases (``tumour_fraction``) a tumour in one hemisphere's cerebral white matter from the
  shared tumour model (:mod:`medidiff.data.tumour`: necrotic core, enhancing rim, oedema spreading
  along white matter, mass effect pushing tissue aside);
* four modalities: each voxel mixes its tissue fractions' intensities (the phantom's table,
  :data:`medidiff.data.phantom.INTENSITIES`: T1 WM > GM > CSF, T2 CSF > GM > WM, FLAIR with CSF
  suppressed and oedema bright, T1c with a bright enhancing rim), plus the template T1's own
  texture that the tissue fractions do not explain (deep nuclei, brainstem, cerebellar folia),
  carried into each modality in units of its WM-GM contrast (so it flips sign on T2); per-case
  gain and contrast jitter, a smooth bias field per modality and Rician noise (3 % of WM);
* skull-stripped: exactly 0 outside the brain mask, positive inside (the BraTS convention the
  data pipeline relies on).

Each case also writes ``<id>-tissue.nii.gz`` (uint8: 0 background, 1 CSF, 2 GM, 3 WM): the
healthy tissue class with the largest fraction at each brain voxel, after every deformation and
the mass effect. The tumour is NOT in it: voxels inside the tumour keep the tissue the tumour grew
into, and ``seg`` marks the tumour; a tissue segmenter should leave ``seg > 0`` out. The BraTS
manifest builder ignores the file.

Geometry: the BraTS field of view (240 x 240 x 155 mm) and affine (x and y flipped). ``--shape``
resamples the template into that field of view (spacing = 240/X, 240/Y, 155/Z mm by default), so
32x32x24 test cases hold a whole brain at 7.5 mm; the template is blurred to the output spacing
first, so coarse grids are not aliased. ``spacing`` may be given instead (the field of view is then
shape x spacing and must hold a brain).

Determinism: case ``i`` of seed ``s`` comes from ``numpy.random.SeedSequence([s, i])`` (as the
phantom), with separate streams for anatomy, tumour shape, tumour decision and intensities, so a
case does not depend on how many cases were written, nor its anatomy on ``tumour_fraction``.
"""

from __future__ import annotations

import functools
import importlib.util
from functools import partial
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medidiff.data.brats import BRATS_SHAPE, LABELS, MODALITIES
from medidiff.data.fields import add_rician_noise, check_grid_shape, rotation_matrix, smooth_noise
from medidiff.data.phantom import (
    CSF,
    ED,
    ET,
    GM,
    INTENSITIES,
    NCR,
    WM,
    PhantomCase,
    case_seed,
    draw_intensities,
    unit_texture,
)
from medidiff.data.tumour import draw_tumour_shape, irregular_distance, mass_effect_pull, tumour_regions
from medidiff.errors import DataError, MedidiffError

__all__ = [
    "GENERATOR",
    "TEMPLATE_NOTICE",
    "TISSUE_LABELS",
    "AnatomyError",
    "AnatomySpec",
    "anatomy_affine",
    "make_anatomy_case",
    "template_files",
    "write_anatomy_dataset",
]

GENERATOR = "medidiff.data.anatomy"
TEMPLATE_NAME = "ICBM 2009a nonlinear symmetric MNI152, 1 mm (nilearn package data)"
TEMPLATE_NOTICE = (
    "Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
    "Institute, McGill University. Permission to use, copy, modify, and distribute this software "
    "and its documentation for any purpose and without fee is hereby granted, provided that the "
    "above copyright notice appear in all copies. The authors and McGill University make no "
    "representations about the suitability of this software for any purpose. It is provided "
    '"as is" without express or implied warranty.'
)
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
TISSUE_LABELS: dict[int, str] = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}
BRATS_FOV_MM = np.array(BRATS_SHAPE, dtype=np.float64)  # 240 x 240 x 155 at 1 mm
MIN_SIDE = 24
MIN_FOV_MM = (150.0, 185.0, 130.0)  # a shrunk MNI brain (131 x 163 x 140 mm) with room to move
BASE_SCALE = 0.9  # MNI152 brains are larger than a typical adult's


class AnatomyError(MedidiffError, ValueError):
    """Bad anatomy parameters (shape, spacing, fractions), or nilearn's template missing."""


@dataclass(frozen=True)
class AnatomySpec:
    """Everything that shapes an anatomy case except its seed.

    ``spacing`` None means the BraTS field of view divided by ``shape``. Amplitudes: ``scale``
    is the half-range of the global scale factor, ``deformation_mm`` the std of the smooth
    displacement, ``noise`` the Rician sigma as a fraction of the WM intensity, ``bias`` the std
    of the log bias field.
    """

    shape: tuple[int, int, int] = BRATS_SHAPE
    spacing: tuple[float, float, float] | None = None
    tumour_fraction: float = 0.8
    noise: float = 0.03
    bias: float = 0.1
    scale: float = 0.08
    max_rotation_deg: float = 10.0
    deformation_mm: float = 2.5
    ventricle_scale: tuple[float, float] = (0.9, 1.6)

    def __post_init__(self) -> None:
        shape = check_grid_shape(
            self.shape, MIN_SIDE, AnatomyError, "e.g. --shape 240 240 155 (BraTS) or --shape 32 32 24 for tests"
        )
        object.__setattr__(self, "shape", shape)
        if self.spacing is not None:
            sp = self.spacing
            sp = (sp,) * 3 if isinstance(sp, (int, float)) and not isinstance(sp, bool) else tuple(sp)
            if len(sp) != 3 or not all(isinstance(v, (int, float)) and np.isfinite(v) and v > 0 for v in sp):
                raise AnatomyError(f"spacing must be 1 or 3 positive numbers (mm), got {self.spacing!r}")
            object.__setattr__(self, "spacing", tuple(float(v) for v in sp))
            fov = np.asarray(self.shape) * np.asarray(sp)
            if np.any(fov < np.asarray(MIN_FOV_MM)):
                raise AnatomyError(
                    f"shape {self.shape} x spacing {self.spacing} mm gives a "
                    f"{' x '.join(f'{v:g}' for v in fov)} mm field of view, too small for a brain "
                    f"(needs at least {' x '.join(f'{v:g}' for v in MIN_FOV_MM)} mm): raise the "
                    "spacing or leave it out (the BraTS field of view is used)"
                )
        if not 0.0 <= self.tumour_fraction <= 1.0:
            raise AnatomyError(
                f"tumour_fraction is the probability that a case has a tumour and must be in [0, 1], "
                f"got {self.tumour_fraction!r}"
            )
        for name, hi in (("noise", 0.5), ("bias", 0.5), ("scale", 0.2), ("max_rotation_deg", 20.0)):
            v = getattr(self, name)
            if not 0.0 <= v <= hi:
                raise AnatomyError(f"{name} must be in [0, {hi}], got {v!r}")
        if not 0.0 <= self.deformation_mm <= 6.0:
            raise AnatomyError(f"deformation_mm must be in [0, 6], got {self.deformation_mm!r}")
        lo, hi = self.ventricle_scale
        if not 0.7 <= lo <= hi <= 2.0:
            raise AnatomyError(f"ventricle_scale must be 0.7 <= low <= high <= 2, got {self.ventricle_scale!r}")

    @property
    def voxel_mm(self) -> np.ndarray:
        if self.spacing is not None:
            return np.asarray(self.spacing, dtype=np.float64)
        return BRATS_FOV_MM / np.asarray(self.shape, dtype=np.float64)


def anatomy_affine(shape: tuple[int, int, int], spacing: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """The BraTS affine (x and y flipped) at ``spacing``; equals BRATS_AFFINE at 240^2 x 155, 1 mm."""
    s = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([-s[0], -s[1], s[2], 1.0])
    affine[1, 3] = (shape[1] - 1) * s[1]
    return affine


# --------------------------------------------------------------------------------------------
# the template


def template_files() -> dict[str, Path]:
    """Paths of the template files inside the installed nilearn package (nothing is imported or
    downloaded: ``nilearn.datasets`` pulls in pandas and scikit-learn, which this does not need)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise AnatomyError(
            "the anatomy data set needs nilearn's MNI152 template (package data, no download): "
            "pip install nilearn"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    files = {k: data / name for k, name in TEMPLATE_FILES.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise AnatomyError(f"nilearn is installed but its MNI152 template files are missing: {missing[0]}")
    return files


@dataclass(frozen=True)
class _Template:
    """The template's maps on its own 1 mm RAS grid (float32), blurred to an output spacing."""

    brain: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    texture: np.ndarray  # T1 not explained by tissue fractions, in units of the T1 WM-GM contrast
    origin_mm: np.ndarray  # world (MNI) mm of voxel (0, 0, 0); the grid is axis-aligned, 1 mm
    centroid_mm: np.ndarray  # brain centroid
    extent_points_mm: np.ndarray  # (N, 3) brain boundary points, for the output placement
    ventricle_centre_mm: np.ndarray
    ventricle_spread_mm: np.ndarray
    tumour_sites_mm: np.ndarray  # (N, 3) cerebral white-matter points, and their depth below
    tumour_site_depth_mm: np.ndarray  # the brain surface (mm)


@functools.lru_cache(maxsize=1)
def _raw_template() -> _Template:
    import nibabel as nib

    files = template_files()
    maps = {}
    for k, path in files.items():
        try:
            img = nib.load(str(path))
            maps[k] = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:  # a broken install: say which file
            raise DataError(path, f"cannot read nilearn's template file ({exc})") from exc
        affine = img.affine
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise AnatomyError(f"unexpected template affine {affine.tolist()}: expected 1 mm RAS axes")
    t1 = maps["t1"] / maps["t1"].max()
    gm = maps["gm"] / maps["gm"].max()
    wm = maps["wm"] / maps["wm"].max()
    brain_mask = t1 > 0  # the shipped T1 is skull-stripped: its support is the brain
    brain = brain_mask.astype(np.float32)
    gm *= brain
    wm *= brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    # T1 ~ a csf + b gm + c wm over the brain; the residual is the template's own texture.
    sel = brain_mask
    design = np.stack([csf[sel], gm[sel], wm[sel]], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, t1[sel].astype(np.float64), rcond=None)
    texture = np.zeros_like(t1)
    texture[sel] = (t1[sel] - design @ coef) / float(coef[2] - coef[1])
    origin = affine[:3, 3].astype(np.float64)
    idx = np.argwhere(brain_mask)
    centroid = origin + idx.mean(axis=0)
    boundary = brain_mask & ~ndimage.binary_erosion(brain_mask)
    extent_points = origin + np.argwhere(boundary)[::7]
    depth = ndimage.distance_transform_edt(brain_mask)
    # Lateral and third ventricles: CSF deep inside the brain (the sulci and the cisterns are
    # within ~15 mm of the surface), connected components of some size.
    deep_csf = (csf > 0.5) & (depth > 15)
    lab, n = ndimage.label(deep_csf)
    sizes = ndimage.sum(deep_csf, lab, index=np.arange(1, n + 1))
    vent = np.isin(lab, 1 + np.flatnonzero(sizes >= 500))
    v_idx = np.argwhere(vent)
    vent_centre = origin + v_idx.mean(axis=0)
    vent_spread = 2.0 * v_idx.std(axis=0)
    # Tumour sites: white matter of the cerebrum (MNI z > -10 keeps the cerebellum and brainstem
    # out), away from the midline.
    pts = np.argwhere((wm > 0.8) & brain_mask)
    world = origin + pts
    keep = (world[:, 2] > -10) & (np.abs(world[:, 0]) > 12)
    sites = world[keep][::5]
    site_depth = depth[tuple(pts[keep][::5].T)].astype(np.float64)
    return _Template(
        brain=brain,
        gm=gm,
        wm=wm,
        texture=texture,
        origin_mm=origin,
        centroid_mm=centroid,
        extent_points_mm=extent_points.astype(np.float64),
        ventricle_centre_mm=vent_centre,
        ventricle_spread_mm=vent_spread,
        tumour_sites_mm=sites.astype(np.float64),
        tumour_site_depth_mm=site_depth,
    )


@functools.lru_cache(maxsize=4)
def _template(voxel_mm: tuple[float, float, float]) -> _Template:
    """The template blurred to an output grid of ``voxel_mm`` in template millimetres.

    A Gaussian whose FWHM grows the 1 mm voxel to the output voxel (sigma = sqrt(s^2 - 1)/2.355)
    keeps coarse grids from aliasing the cortex into noise.
    """
    raw = _raw_template()
    sigma = [np.sqrt(max(s * s - 1.0, 0.0)) / 2.355 for s in voxel_mm]
    if max(sigma) < 0.25:
        return raw
    blur = functools.partial(ndimage.gaussian_filter, sigma=sigma, truncate=3.0)
    return replace(raw, brain=blur(raw.brain), gm=blur(raw.gm), wm=blur(raw.wm), texture=blur(raw.texture))


# --------------------------------------------------------------------------------------------
# one case


@dataclass(frozen=True)
class _Geometry:
    """Output world -> template world: p = centroid + S^-1 R^T (w - centre_out - shift) (+ warps)."""

    scale: np.ndarray  # (3,) per template axis
    rot: np.ndarray  # (3, 3)
    angles: np.ndarray
    shift: np.ndarray  # (3,) world mm
    centre_out: np.ndarray
    ventricle_scale: float
    brain_lo: np.ndarray  # (3,) world offsets of the brain's extent from centre_out + shift
    brain_hi: np.ndarray


def _place(
    tpl: _Template, spec: AnatomySpec, affine: np.ndarray, rng: np.random.Generator
) -> _Geometry:
    """Draw scale, rotation and ventricle size, then a shift that keeps the brain in the grid."""
    shape = np.asarray(spec.shape, dtype=np.float64)
    g = BASE_SCALE * (1.0 + rng.uniform(-spec.scale, spec.scale))
    scale = g * rng.uniform(0.97, 1.03, 3)
    angles = rng.uniform(-1.0, 1.0, 3) * spec.max_rotation_deg
    lo_v, hi_v = spec.ventricle_scale
    vent = float(rng.uniform(lo_v, hi_v))
    jitter = rng.uniform(-1.0, 1.0, 3)
    top_margin = float(rng.uniform(2.0, 8.0))
    rot = rotation_matrix(angles)
    centre_out = affine[:3, :3] @ ((shape - 1) / 2) + affine[:3, 3]
    pts = (rot @ ((tpl.extent_points_mm - tpl.centroid_mm) * scale).T).T  # world offsets
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    fov = np.abs(np.diag(affine)[:3]) * shape
    room = np.maximum(fov - (hi - lo), 0.0) / 2  # free mm on each side
    shift = -(lo + hi) / 2 + jitter * np.minimum(room, 5.0)
    # z (superior): keep the vertex in view; a brain taller than the view loses its lowest slices
    if hi[2] - lo[2] + 2 * top_margin > fov[2]:
        shift[2] = fov[2] / 2 - top_margin - hi[2]
    return _Geometry(scale, rot, angles, shift, centre_out, vent, lo, hi)


def make_anatomy_case(
    rng_or_seed: np.random.SeedSequence | int,
    tumour: bool | None = None,
    *,
    spec: AnatomySpec | None = None,
) -> PhantomCase:
    """Draw one case (the same record as a phantom case; ``tissue`` holds codes 0-3 here).

    Args:
        rng_or_seed: a SeedSequence (e.g. :func:`medidiff.data.phantom.case_seed`) or an int.
        tumour: True/False forces a tumour or none; None draws one with ``spec.tumour_fraction``.
        spec: shape, spacing and amplitudes; default :class:`AnatomySpec` (BraTS grid).
    """
    spec = spec or AnatomySpec()
    if isinstance(rng_or_seed, bool) or not isinstance(rng_or_seed, (int, np.integer, np.random.SeedSequence)):
        raise AnatomyError(f"make_anatomy_case needs a SeedSequence or an int seed, got {rng_or_seed!r}")
    root = np.random.default_rng(rng_or_seed)
    rng_anat, rng_tum, rng_decide, rng_img = (np.random.default_rng(int(s)) for s in root.integers(0, 2**62, 4))
    has_tumour = bool(rng_decide.random() < spec.tumour_fraction) if tumour is None else bool(tumour)

    shape = spec.shape
    vox = spec.voxel_mm
    affine = anatomy_affine(shape, vox)
    geo = _place(_raw_template(), spec, affine, rng_anat)
    # Blur for the output voxel in template mm; quarter-millimetre steps keep the cache small.
    tpl = _template(tuple(round(float(v) / BASE_SCALE * 4) / 4 for v in vox))

    # ---- the output box that can hold brain (everything else stays 0)
    margin = 3.0 * spec.deformation_mm + 2.0 * vox.max()
    w_lo = geo.centre_out + geo.shift + geo.brain_lo - margin
    w_hi = geo.centre_out + geo.shift + geo.brain_hi + margin
    diag = np.diag(affine)[:3]
    i_a = (w_lo - affine[:3, 3]) / diag
    i_b = (w_hi - affine[:3, 3]) / diag
    lo_i = np.clip(np.floor(np.minimum(i_a, i_b)).astype(int), 0, np.asarray(shape))
    hi_i = np.clip(np.ceil(np.maximum(i_a, i_b)).astype(int) + 1, 0, np.asarray(shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo_i, hi_i))
    bshape = tuple(int(b - a) for a, b in zip(lo_i, hi_i))

    # ---- template coordinates of every box voxel: inverse affine, then the smooth warp.
    # The affine is diagonal, so world offsets are 1D per axis and broadcasting builds 3D fields.
    h = [
        (diag[d] * np.arange(lo_i[d], hi_i[d]) + affine[d, 3] - geo.centre_out[d] - geo.shift[d]).astype(
            np.float32
        )
        for d in range(3)
    ]
    h = [h[0][:, None, None], h[1][None, :, None], h[2][None, None, :]]
    wl = 40.0 / float(vox.mean())  # ~40 mm wavelength, in output voxels
    v = []
    for k in range(3):  # u = S^-1 R^T h, plus the nonlinear displacement (template mm)
        comp = (geo.rot[0, k] * h[0] + geo.rot[1, k] * h[1] + geo.rot[2, k] * h[2]) / np.float32(geo.scale[k])
        comp = comp + np.float32(spec.deformation_mm) * smooth_noise(rng_anat, bshape, wl)
        v.append((comp + np.float32(tpl.centroid_mm[k])).astype(np.float32, copy=False))
    del h
    # Ventricles: sampling nearer their centre displays them larger (radial zoom; monotone while
    # m < 1 and m > -2, so the warp never folds).
    m_v = np.float32(1.0 - 1.0 / geo.ventricle_scale)
    off = [v[k] - np.float32(tpl.ventricle_centre_mm[k]) for k in range(3)]
    gauss = np.exp(-sum((off[k] / np.float32(tpl.ventricle_spread_mm[k])) ** 2 for k in range(3)))
    for k in range(3):
        v[k] -= off[k] * (m_v * gauss)
    del off, gauss

    # ---- tumour shape and site (own stream; drawn even when unused so nothing else shifts)
    side = 1.0 if rng_tum.random() < 0.5 else -1.0  # +1: patient's right (MNI x > 0)
    t_vox_mm = float(vox.max() / geo.scale.min())  # an output voxel, in template mm
    shape_t = draw_tumour_shape(rng_tum, 70.0, voxel_mm=t_vox_mm)  # 70 mm: half the brain's width
    ok = (np.sign(tpl.tumour_sites_mm[:, 0]) == side) & (tpl.tumour_site_depth_mm > shape_t.r_et + 4.0)
    if not ok.any():  # coarse grids (large minimum radii): the deepest sites of the drawn side
        on_side = np.sign(tpl.tumour_sites_mm[:, 0]) == side
        ok = on_side & (tpl.tumour_site_depth_mm >= np.quantile(tpl.tumour_site_depth_mm[on_side], 0.9))
    sites = tpl.tumour_sites_mm[ok]
    t_centre = sites[int(rng_tum.integers(len(sites)))]

    tumour_box: tuple[slice, ...] | None = None
    rho = None
    if has_tumour:
        rho = np.sqrt(sum((v[k] - np.float32(t_centre[k])) ** 2 for k in range(3)))  # template mm
        near = rho < 1.35 * shape_t.r_ed + 2.0 * t_vox_mm
        if near.any():
            idx = np.argwhere(near)
            tumour_box = tuple(
                slice(int(a), int(b) + 1) for a, b in zip(np.maximum(idx.min(0) - 2, 0), idx.max(0) + 2)
            )
            pull = mass_effect_pull(rho, shape_t)
            for k in range(3):
                v[k] -= (v[k] - np.float32(t_centre[k])) * pull
            del pull
        else:  # the site fell outside the grid: a tumour-free case, said in the metadata
            has_tumour = False

    # ---- sample the template (trilinear) at the healthy-anatomy coordinates
    coords = np.stack([(v[k] - np.float32(tpl.origin_mm[k])).ravel() for k in range(3)])
    del v
    brain_p, gm, wm, texture = (
        ndimage.map_coordinates(arr, coords, order=1, mode="constant", cval=0.0, prefilter=False).reshape(bshape)
        for arr in (tpl.brain, tpl.gm, tpl.wm, tpl.texture)
    )
    del coords
    brain = brain_p >= 0.5
    csf = np.clip(brain_p - gm - wm, 0.0, 1.0)
    tissue_b = np.zeros(bshape, dtype=np.uint8)
    cls = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1  # 1 CSF, 2 GM, 3 WM
    tissue_b[brain] = cls[brain]
    del cls

    # ---- tumour labels (the shared model)
    seg_b = np.zeros(bshape, dtype=np.uint8)
    tumour_meta: dict[str, Any] | None = None
    fractions: dict[int, np.ndarray] = {}
    if has_tumour:
        assert tumour_box is not None and rho is not None
        tb = tumour_box
        d = irregular_distance(rho[tb], shape_t, voxel_mm=t_vox_mm)
        t_tis = tissue_b[tb]
        erode = max(1, int(round(3.0 / vox.min())))  # keep the tumour ~3 mm below the brain surface
        inside = ndimage.binary_erosion(brain[tb], iterations=erode, border_value=1)
        ncr, et, ed = tumour_regions(
            d, shape_t, brain=brain[tb], inside=inside, csf=t_tis == 1, gm=t_tis == 2, wm=t_tis == 3
        )
        s_b = seg_b[tb]
        s_b[ed] = 2
        s_b[et] = 3
        s_b[ncr] = 1
        for code, mask in ((NCR, ncr), (ET, et), (ED, ed)):
            # partial volume at the tumour's borders, as the template's maps have at tissue borders
            fractions[code] = ndimage.gaussian_filter(mask.astype(np.float32), 0.6, truncate=3.0)
        has_tumour = bool((s_b > 0).any())
    del rho

    # ---- images
    tex = unit_texture(rng_img, bshape)
    wl_bias = 100.0 / float(vox.mean())  # bias fields vary over ~10 cm
    images_b: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for m in MODALITIES:
        gain, lut = draw_intensities(m, rng_img)
        img = csf * lut[CSF] + gm * lut[GM] + wm * lut[WM] + texture * (lut[WM] - lut[GM])
        img *= 1.0 + np.float32(0.02) * tex  # fine within-tissue texture
        if fractions:
            sub = img[tumour_box]
            total = sum(fractions.values())
            tumour_img = sum(f * lut[c] for c, f in fractions.items()) * (1.0 + np.float32(0.1) * tex[tumour_box])
            sub *= 1.0 - total
            sub += tumour_img
        img *= np.exp(np.float32(spec.bias) * smooth_noise(rng_img, bshape, wl_bias))
        add_rician_noise(img, spec.noise * lut[WM], rng_img)
        img *= brain  # skull-stripped: exactly 0 outside the brain ...
        np.maximum(img, np.float32(1e-3 * lut[WM]), out=img, where=brain)  # ... and > 0 inside
        images_b[m] = img
        gains[m] = round(gain, 4)

    def full(arr: np.ndarray, dtype: Any) -> np.ndarray:
        out = np.zeros(shape, dtype=dtype)
        out[box] = arr
        return out

    images = {m: full(img, np.float32) for m, img in images_b.items()}
    seg = full(seg_b, np.uint8)
    tissue = full(tissue_b, np.uint8)
    brain_mask = full(brain, bool)
    voxel_ml = float(np.prod(vox)) / 1000.0
    if has_tumour:
        wt_vox = np.argwhere(seg > 0).mean(axis=0)
        wt_world = affine[:3, :3] @ wt_vox + affine[:3, 3]
        tumour_meta = {
            # from the site itself: the fallback below may take a site of the other hemisphere
            "hemisphere": "right" if t_centre[0] > 0 else "left",  # MNI x > 0 is the patient's right
            "lobe": _lobe(t_centre),
            "centre_mni_mm": [round(float(c), 2) for c in t_centre],
            "centroid_world_mm": [round(float(c), 2) for c in wt_world],
            "radius_mm": {  # in the output space (template mm x the case's scale)
                k: round(r * float(geo.scale.mean()), 3)
                for k, r in (("NCR", shape_t.r_nc), ("ET", shape_t.r_et), ("ED", shape_t.r_ed))
            },
            "mass_effect": round(shape_t.mass, 4),
            "volume_ml": {name: round(int((seg == v).sum()) * voxel_ml, 4) for v, name in LABELS.items() if v},
        }
    metadata: dict[str, Any] = {
        "shape": list(shape),
        "spacing_mm": [round(float(s), 6) for s in vox],
        "template": TEMPLATE_NAME,
        "scale": [round(float(s), 4) for s in geo.scale],
        "rotation_deg": [round(float(a), 3) for a in geo.angles],
        "shift_mm": [round(float(s), 3) for s in geo.shift],
        "ventricle_scale": round(geo.ventricle_scale, 4),
        "brain_volume_ml": round(int(brain_mask.sum()) * voxel_ml, 2),
        "tissue_volume_ml": {
            name: round(int((tissue == code).sum()) * voxel_ml, 2) for code, name in TISSUE_LABELS.items() if code
        },
        "modality_gain": gains,
        "skull_stripped": True,
        "has_tumour": has_tumour,
        "tumour": tumour_meta,
    }
    return PhantomCase(images=images, seg=seg, brain_mask=brain_mask, tissue=tissue, affine=affine, metadata=metadata)


def _lobe(p: np.ndarray) -> str:
    """Coarse lobe of an MNI point (mm), for text prompts; boundaries are rough by design."""
    x, y, z = p
    if y < -65:
        return "occipital"
    if z < 5 and y < 15 and abs(x) > 28:
        return "temporal"
    if y > -10:
        return "frontal"
    return "parietal"


# --------------------------------------------------------------------------------------------
# data set

MANIFEST_NAME = "anatomy.json"


def write_anatomy_dataset(
    out: str | Path,
    cases: int,
    *,
    seed: int = 0,
    spec: AnatomySpec | None = None,
    progress: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``cases`` anatomy cases in the BraTS 2023 GLI layout under ``out``; return case folders.

    Each case folder also holds ``<id>-tissue.nii.gz`` (0 background, 1 CSF, 2 GM, 3 WM). The
    manifest is ``out/anatomy.json``; layout and overwrite rules are
    :func:`medidiff.data.synthetic_set.write_case_dataset`'s.
    """
    from medidiff import __version__
    from medidiff.config import to_dict
    from medidiff.data.synthetic_set import check_dataset_args, write_case_dataset

    check_dataset_args(cases, seed, workers)
    spec = spec or AnatomySpec()
    template_files()  # a missing nilearn is one clear line before anything is written
    vox = spec.voxel_mm
    template = {"name": TEMPLATE_NAME, "copyright": TEMPLATE_NOTICE, "source": "nilearn package data"}
    manifest = {
        "generator": GENERATOR,
        "medidiff_version": __version__,
        "spec": to_dict(spec),
        "spacing_mm": [float(s) for s in vox],
        "affine": anatomy_affine(spec.shape, vox).tolist(),
        "skull_stripped": True,
        "template": template,
        "tissue_labels": {str(k): v for k, v in TISSUE_LABELS.items()},
        "tissue_note": "tissue = healthy class with the largest fraction; tumour voxels are in seg only",
        "nominal_intensities": {m: list(v) for m, v in INTENSITIES.items()},
    }
    provenance = {
        "generator": GENERATOR,
        "shape": list(spec.shape),
        "spacing_mm": [round(float(s), 6) for s in vox],
        "tumour_fraction": spec.tumour_fraction,
        "skull_stripped": True,
        "template": template,
    }
    return write_case_dataset(
        out,
        cases,
        seed,
        partial(_anatomy_case, seed=seed, spec=spec),  # picklable: workers > 1 sends it to processes
        kind="an anatomy",
        manifest_name=MANIFEST_NAME,
        manifest=manifest,
        provenance=provenance,
        extra_volumes={"tissue": "tissue"},
        progress=progress,
        workers=workers,
    )


def _anatomy_case(index: int, *, seed: int, spec: AnatomySpec) -> PhantomCase:
    return make_anatomy_case(case_seed(seed, index), spec=spec)
