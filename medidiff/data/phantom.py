"""Procedural BraTS-like phantom heads: the embedded default data set.

Every case is a different synthetic head drawn from a small anatomical model, written in the
BraTS 2023 GLI layout (``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``)
so that every pipeline, test and tutorial can run without patient data or a download.

Why a procedural phantom beside the template-based anatomy set (:mod:`medidiff.data.anatomy`):
(1) it works at any grid size at 1 mm, including the tiny grids tests use, (2) every case gets its
own head shape, folding, ventricles and tumour, and (3) the ground truth of every tissue is exact.
The price is anatomy that is plausible rather than realistic (no cerebellum, brain stem or
vessels): the phantom is for exercising code, never for judging a model's realism; use the anatomy
set for that. Both share one tumour model (:mod:`medidiff.data.tumour`) and one intensity table.

The model, in the head's own normalised frame ``a = (right, anterior, superior)`` where the skull
cavity is the unit ball before deformation:

* scalp and skull shells, the intracranial cavity (outer CSF), cortex (GM) with random folding
  and sulcal CSF, white matter, deep grey nuclei, lateral and third ventricles, an
  interhemispheric fissure;
* per case: head size and axis ratios, translation, a small rotation, ventricle size and a smooth
  random deformation (separable Gaussian-RBF noise, so a 240x240x155 case costs a few seconds);
* optionally a tumour in one hemisphere: necrotic core (label 1) inside an enhancing rim
  (label 3) inside oedema (label 2) that spreads further along white matter; the tissue around it
  is pushed outward (mass effect);
* four modalities from a tissue intensity table with the usual relative contrasts, a per-case gain
  and contrast jitter, within-tissue texture, a partial-volume blur, a smooth multiplicative bias
  field per modality and Rician noise (magnitude of a complex Gaussian signal).

Skull stripping: the scalp and skull exist in the anatomy (``PhantomCase.tissue``), but the images
are written skull-stripped, i.e. exactly 0 outside the intracranial mask and positive inside, as
BraTS releases are, because the data pipeline and the percentile scaling treat 0 as "not brain".
``PhantomSpec.skull_strip=False`` keeps the head (with Rician noise in the air) for tools that
need an unstripped input.

Geometry: 1 mm voxels and the BraTS affine (x and y flipped, LPS-style) generalised to any shape
by :func:`brats_affine`; it equals :data:`medidiff.data.brats.BRATS_AFFINE` at 240x240x155. With
that affine every world x is <= 0, so "right" means world x larger than the head's mid-sagittal
plane, not world x > 0. Voxel index i grows towards the patient's LEFT.

Determinism: case ``i`` of seed ``s`` is drawn from ``numpy.random.SeedSequence([s, i])``, so a
case can be regenerated alone, does not depend on how many cases were written, and its anatomy
does not depend on ``tumour_fraction`` (the tumour decision and tumour parameters use their own
streams).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medidiff import __version__
from medidiff.data.brats import BRATS_AFFINE, LABELS, MODALITIES
from medidiff.data.fields import add_rician_noise, check_grid_shape, rotation_matrix, smooth_noise
from medidiff.data.synthetic_set import case_id, check_dataset_args, write_case_dataset
from medidiff.data.tumour import draw_tumour_shape, irregular_distance, mass_effect_pull, tumour_regions
from medidiff.errors import MedidiffError

__all__ = [
    "DEFAULT_SHAPE",
    "GENERATOR",
    "TISSUES",
    "INTENSITIES",
    "PhantomError",
    "PhantomSpec",
    "PhantomCase",
    "brats_affine",
    "check_dataset_args",
    "case_id",
    "case_seed",
    "make_phantom_case",
    "write_phantom_dataset",
]

GENERATOR = "medidiff.data.phantom"
DEFAULT_SHAPE: tuple[int, int, int] = (64, 64, 48)
MIN_SIDE = 16  # below this there is no room for ventricles, cortex and a three-part tumour
MANIFEST_NAME = "phantom.json"

# Tissue codes of the anatomy model (PhantomCase.tissue). Tumour classes override healthy tissue.
BACKGROUND, CSF, GM, WM, DEEP_GM, SKULL, SCALP, NCR, ET, ED = range(10)
TISSUES: dict[int, str] = {
    BACKGROUND: "background",
    CSF: "csf",
    GM: "grey_matter",
    WM: "white_matter",
    DEEP_GM: "deep_grey_matter",
    SKULL: "skull",
    SCALP: "scalp",
    NCR: "necrotic_core",
    ET: "enhancing_tumour",
    ED: "oedema",
}
_TISSUE_TO_LABEL = {NCR: 1, ED: 2, ET: 3}

# Nominal intensities (arbitrary scanner-like units, different scale per sequence), indexed by
# tissue code. Orderings follow the textbook appearance: T1 WM > GM > CSF; T2 CSF bright, WM darker
# than GM; FLAIR suppresses CSF so oedema stands out; gadolinium lights up the tumour rim on T1c;
# necrosis is T1-dark / T2-bright; fat in the scalp is T1-bright; cortical bone is dark everywhere.
INTENSITIES: dict[str, tuple[float, ...]] = {
    #         bg    csf     gm     wm   deepgm skull scalp  ncr     et     ed
    "t1n": (0.0, 250.0, 550.0, 800.0, 620.0, 80.0, 1000.0, 300.0, 520.0, 600.0),
    "t1c": (0.0, 280.0, 640.0, 900.0, 700.0, 100.0, 1100.0, 330.0, 1700.0, 680.0),
    "t2w": (0.0, 2000.0, 1050.0, 700.0, 950.0, 120.0, 800.0, 1800.0, 1250.0, 1500.0),
    "t2f": (0.0, 90.0, 480.0, 380.0, 450.0, 30.0, 600.0, 300.0, 600.0, 780.0),
}
# Within-tissue texture amplitude (relative): tumours are more heterogeneous than healthy tissue.
_TEXTURE = np.array([0.0, 0.02, 0.03, 0.03, 0.03, 0.05, 0.05, 0.10, 0.10, 0.06], dtype=np.float32)

# Intracranial semi-axes as fractions of the half field of view (right, anterior, superior):
# narrower left-right than front-back, like a brain in the BraTS grid.
_SEMI_AXES = np.array([0.62, 0.76, 0.74])
_SKULL_IN, _SKULL_OUT, _SCALP_OUT = 1.0, 1.07, 1.14  # shells in units of the cavity radius
_CORTEX_OUT, _WM_OUT = 0.94, 0.78


def draw_intensities(modality: str, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """A case's (gain, intensity table) for ``modality``: :data:`INTENSITIES` times a scanner gain
    in [0.85, 1.2] with +-4 % contrast jitter per tissue. Shared with the anatomy data set."""
    gain = float(rng.uniform(0.85, 1.2))
    lut = np.asarray(INTENSITIES[modality], dtype=np.float32) * np.float32(gain)
    lut[1:] *= rng.uniform(0.96, 1.04, len(lut) - 1).astype(np.float32)  # contrast jitter
    return gain, lut


def unit_texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fine within-tissue texture: white noise blurred over ~1 voxel, scaled to unit std."""
    texture = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.8)
    texture *= np.float32(1.0 / max(float(texture.std()), 1e-6))
    return texture


class PhantomError(MedidiffError, ValueError):
    """Bad phantom parameters (shape, case count, seed, fractions)."""


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that shapes a phantom case except its seed.

    ``tumour_fraction`` is the probability that a case has a tumour (default 0.8: about one case
    in five is tumour-free). Noise, bias and deformation are relative amplitudes.
    """

    shape: tuple[int, int, int] = DEFAULT_SHAPE
    tumour_fraction: float = 0.8
    skull_strip: bool = True
    noise: float = 0.03  # Rician sigma as a fraction of the white-matter intensity
    bias: float = 0.12  # std of the log bias field (0.12 ~ +-12 % intensity drift)
    max_rotation_deg: float = 6.0  # per axis, uniform in [-max, max]
    deformation: float = 0.04  # std of the smooth displacement, in units of the cavity radius

    def __post_init__(self) -> None:
        shape = check_grid_shape(
            self.shape,
            MIN_SIDE,
            PhantomError,
            "the phantom needs room for cortex, ventricles and a three-part tumour; e.g. --shape 64 64 48",
        )
        object.__setattr__(self, "shape", shape)
        if not 0.0 <= self.tumour_fraction <= 1.0:
            raise PhantomError(
                f"tumour_fraction is the probability that a case has a tumour and must be in "
                f"[0, 1], got {self.tumour_fraction!r}"
            )
        if not 0.0 <= self.noise < 0.5:
            raise PhantomError(f"noise must be in [0, 0.5) (fraction of WM intensity), got {self.noise!r}")
        if not 0.0 <= self.bias < 0.5:
            raise PhantomError(f"bias must be in [0, 0.5) (std of the log field), got {self.bias!r}")
        if not 0.0 <= self.max_rotation_deg <= 20.0:
            raise PhantomError(
                f"max_rotation_deg must be in [0, 20] (larger rotations push the head out of the "
                f"grid), got {self.max_rotation_deg!r}"
            )
        if not 0.0 <= self.deformation <= 0.1:
            raise PhantomError(f"deformation must be in [0, 0.1], got {self.deformation!r}")


@dataclass
class PhantomCase:
    """One synthetic head.

    images: modality -> (X, Y, Z) float32, skull-stripped unless the spec says otherwise.
    seg: (X, Y, Z) uint8 BraTS 2023 labels (0 bg, 1 NCR, 2 ED, 3 ET); all zero without tumour.
    brain_mask: (X, Y, Z) bool intracranial mask (the skull-stripping mask).
    tissue: (X, Y, Z) uint8 anatomy incl. scalp and skull, codes in :data:`TISSUES`.
    affine: 4x4 voxel-to-world (RAS mm) matrix, :func:`brats_affine` of the shape.
    metadata: JSON-serialisable facts: head geometry, ``has_tumour`` and ``tumour`` (None or
        hemisphere 'left'/'right' in RAS terms, approximate lobe, centre in voxels and world mm,
        radii in mm, label volumes in ml).
    """

    images: dict[str, np.ndarray]
    seg: np.ndarray
    brain_mask: np.ndarray
    tissue: np.ndarray
    affine: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def brats_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """The BraTS voxel-to-world affine generalised to ``shape`` (1 mm, x and y flipped).

    Equals :data:`BRATS_AFFINE` for (240, 240, 155): the y translation is ``shape[1] - 1`` (so y
    runs from shape[1]-1 down to 0 like 239..0), the x translation stays 0 as in BraTS files.
    """
    affine = BRATS_AFFINE.copy()
    affine[1, 3] = float(shape[1] - 1)
    return affine


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of case ``index``: independent of the number of cases written."""
    return np.random.SeedSequence([int(seed), int(index)])


# --------------------------------------------------------------------------------------------
# random fields


def _as_generator(rng_or_seed: np.random.Generator | np.random.SeedSequence | int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, bool) or not isinstance(
        rng_or_seed, (int, np.integer, np.random.SeedSequence)
    ):
        raise PhantomError(
            f"make_phantom_case needs a numpy Generator, SeedSequence or non-negative int seed, "
            f"got {type(rng_or_seed).__name__}"
        )
    if isinstance(rng_or_seed, (int, np.integer)) and rng_or_seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {rng_or_seed}")
    return np.random.default_rng(rng_or_seed)


def _ellipsoid(ax: np.ndarray, ay: np.ndarray, az: np.ndarray, centre, semi) -> np.ndarray:
    return (
        ((ax - centre[0]) / semi[0]) ** 2
        + ((ay - centre[1]) / semi[1]) ** 2
        + ((az - centre[2]) / semi[2]) ** 2
    ) < 1.0


def _box(centre_vox: np.ndarray, radius: float, shape: tuple[int, int, int]) -> tuple[slice, ...]:
    lo = np.maximum(np.floor(centre_vox - radius).astype(int), 0)
    hi = np.minimum(np.ceil(centre_vox + radius).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


# --------------------------------------------------------------------------------------------
# one case


def make_phantom_case(
    rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
    shape: tuple[int, int, int] | None = None,
    tumour: bool | None = None,
    *,
    spec: PhantomSpec | None = None,
) -> PhantomCase:
    """Draw one phantom head.

    Args:
        rng_or_seed: a Generator, a SeedSequence (e.g. :func:`case_seed`) or an int seed.
        shape: (X, Y, Z) grid; overrides ``spec.shape`` when given.
        tumour: True/False forces a tumour or none; None draws one with probability
            ``spec.tumour_fraction`` from a dedicated stream (anatomy does not depend on it).
        spec: the remaining knobs (noise, bias, rotation, skull stripping); default PhantomSpec().
    """
    spec = spec or PhantomSpec()
    if shape is not None:
        spec = replace(spec, shape=shape)  # re-validated by __post_init__
    shape = spec.shape
    root = _as_generator(rng_or_seed)
    # Separate streams: anatomy, tumour parameters, tumour decision, intensities/noise.
    streams = [np.random.default_rng(int(s)) for s in root.integers(0, 2**62, size=4)]
    rng_anat, rng_tum, rng_decide, rng_img = streams
    has_tumour = bool(rng_decide.random() < spec.tumour_fraction) if tumour is None else bool(tumour)

    affine = brats_affine(shape)
    shape_arr = np.asarray(shape, dtype=np.float64)
    half = shape_arr / 2.0

    # ---- head geometry (mm), drawn in a fixed order so streams stay aligned
    semi = _SEMI_AXES * half * rng_anat.uniform(0.92, 1.04) * rng_anat.uniform(0.96, 1.04, 3)
    shift = rng_anat.uniform(-0.03, 0.03, 3) * half
    angles = rng_anat.uniform(-1.0, 1.0, 3) * spec.max_rotation_deg
    vent_scale = float(rng_anat.uniform(0.7, 1.4))
    rot = rotation_matrix(angles)
    centre_world = affine[:3, :3] @ ((shape_arr - 1) / 2) + affine[:3, 3] + shift

    # Normalised head-frame coordinates a = R^T (world - centre) / semi; the affine is diagonal,
    # so world offsets are 1D per axis and broadcasting builds the 3D fields.
    p = [
        (affine[d, d] * np.arange(shape[d]) + affine[d, 3] - centre_world[d]).astype(np.float32)
        for d in range(3)
    ]
    p = [p[0][:, None, None], p[1][None, :, None], p[2][None, None, :]]
    mean_semi = float(semi.mean())
    wl_def = max(6.0, 0.8 * mean_semi)
    a = []
    for k in range(3):
        comp = rot[0, k] * p[0] + rot[1, k] * p[1] + rot[2, k] * p[2]
        comp = comp / np.float32(semi[k]) + np.float32(spec.deformation) * smooth_noise(
            rng_anat, shape, wl_def
        )
        a.append(comp.astype(np.float32, copy=False))
    del p
    r = np.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)  # cavity radius coordinate
    wl_fold = max(3.0, mean_semi / 6.0)
    fold = smooth_noise(rng_anat, shape, wl_fold)  # gyral white-matter fingers
    sulc = smooth_noise(rng_anat, shape, wl_fold)  # its zero sheets become sulci

    # ---- tumour parameters (own stream; drawn even when unused so nothing else shifts)
    side = 1.0 if rng_tum.random() < 0.5 else -1.0  # +1 = right hemisphere (head frame +a_x)
    for _ in range(100):
        t_centre = np.array(
            [side * rng_tum.uniform(0.28, 0.5), rng_tum.uniform(-0.45, 0.45), rng_tum.uniform(-0.15, 0.45)]
        )
        if np.linalg.norm(t_centre) <= 0.62:
            break
    shape_t = draw_tumour_shape(rng_tum, float(semi.min()))
    # ---- mass effect: sample healthy anatomy nearer the tumour centre (medidiff.data.tumour).
    ai = a  # internal-anatomy coordinates (the skull is not displaced)
    tumour_box: tuple[slice, ...] | None = None
    if has_tumour:
        t_world = centre_world + rot @ (semi * t_centre)
        t_vox = np.linalg.solve(affine[:3, :3], t_world - affine[:3, 3])
        tumour_box = _box(t_vox, max(3.7 * shape_t.s_mass, 1.35 * shape_t.r_ed + 2), shape)
        ai = [c.copy() for c in a]
        off = [a[k][tumour_box] - np.float32(t_centre[k]) for k in range(3)]
        rho = np.sqrt(sum((off[k] * np.float32(semi[k])) ** 2 for k in range(3)))  # mm
        pull = mass_effect_pull(rho, shape_t)
        for k in range(3):
            ai[k][tumour_box] -= off[k] * pull
    axi, ayi, azi = ai
    ri = np.sqrt(axi**2 + ayi**2 + azi**2) if has_tumour else r

    # ---- healthy anatomy
    brain = r < _SKULL_IN
    # Gyri: white-matter fingers reach out where `fold` is high; sulci are CSF clefts in the
    # troughs between them, lined by cortex, plus thin clefts along the zero sheets of `sulc`.
    wm_out = _WM_OUT + 0.1 * np.tanh(1.5 * fold)
    cortex = (ri < _CORTEX_OUT) & (ri >= wm_out)
    sulcus = cortex & ((fold < -0.6) | (np.abs(sulc) < 0.08)) & (ri > wm_out + 0.04)
    fissure_w = max(0.6, 0.012 * semi[0]) / semi[0]  # at least ~1 voxel wide
    fissure = (np.abs(axi) < fissure_w) & ((azi > 0.3) | (np.abs(ayi) > 0.6)) & (ri < _CORTEX_OUT)
    wm = (ri < wm_out) & ~fissure
    # Deep nuclei and ventricles lie within |a| < 0.6: evaluate them on a central box only (the
    # full grid costs a second at 240x240x155). The mass effect moves them by < 0.5 * radius.
    centre_vox = np.linalg.solve(affine[:3, :3], centre_world - affine[:3, 3])
    cbox = _box(centre_vox, 0.75 * semi.max() + 3, shape)
    cx, cy, cz = np.abs(axi[cbox]), ayi[cbox], azi[cbox]
    deep = np.zeros(shape, dtype=bool)
    deep[cbox] = _ellipsoid(cx, cy, cz, (0.24, 0.0, -0.02), (0.13, 0.25, 0.16))
    vz = 0.12 + 0.35 * cy**2  # lateral ventricles bend down at both ends (banana shape)
    vent = np.zeros(shape, dtype=bool)
    vent[cbox] = _ellipsoid(
        cx, cy, cz - vz, (0.11, 0.0, 0.0), (0.075 * vent_scale, 0.42, 0.1 * vent_scale)
    )
    vent[cbox] |= (cx < 0.025 * vent_scale) & (np.abs(cy + 0.05) < 0.18) & (np.abs(cz + 0.02) < 0.12)
    del vz, cx, cy, cz

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[r < _SCALP_OUT] = SCALP
    tissue[r < _SKULL_OUT] = SKULL
    tissue[brain] = CSF
    tissue[brain & cortex & ~sulcus & ~fissure] = GM
    tissue[brain & wm] = WM
    tissue[brain & deep & wm] = DEEP_GM
    tissue[brain & vent] = CSF
    del cortex, sulcus, fissure, wm, deep, vent, wm_out, fold, sulc, ai, axi, ayi, azi, ri

    # ---- tumour: nested level sets of one irregular distance field
    seg = np.zeros(shape, dtype=np.uint8)
    tumour_meta: dict[str, Any] | None = None
    if has_tumour:
        assert tumour_box is not None
        box = tumour_box
        off = [a[k][box] - np.float32(t_centre[k]) for k in range(3)]
        rho = np.sqrt(sum((off[k] * np.float32(semi[k])) ** 2 for k in range(3)))
        d = irregular_distance(rho, shape_t)
        t_tis = tissue[box]
        ncr, et, ed = tumour_regions(
            d,
            shape_t,
            brain=brain[box],
            inside=brain[box] & (r[box] < 0.97),
            csf=t_tis == CSF,
            gm=t_tis == GM,
            wm=(t_tis == WM) | (t_tis == DEEP_GM),
        )
        t_tis[ed] = ED
        t_tis[et] = ET
        t_tis[ncr] = NCR
        s_box = seg[box]
        s_box[ed] = 2
        s_box[et] = 3
        s_box[ncr] = 1
        wt_vox = np.argwhere(seg > 0).mean(axis=0)
        wt_world = affine[:3, :3] @ wt_vox + affine[:3, 3]
        counts = {name: int((seg == v).sum()) for v, name in LABELS.items() if v}
        tumour_meta = {
            # head-frame +a_x is the patient's right (RAS +x), by construction of `a`
            "hemisphere": "right" if side > 0 else "left",
            "lobe": _lobe(t_centre),
            "centre_voxel": [round(float(v), 2) for v in t_vox],
            "centre_world_mm": [round(float(v), 2) for v in t_world],
            "centroid_world_mm": [round(float(v), 2) for v in wt_world],
            "centre_head_frame": [round(float(v), 4) for v in t_centre],
            "radius_mm": {k: round(v, 3) for k, v in (("NCR", shape_t.r_nc), ("ET", shape_t.r_et), ("ED", shape_t.r_ed))},
            "mass_effect": round(shape_t.mass, 4),
            "volume_ml": {k: round(v / 1000.0, 4) for k, v in counts.items()},  # 1 mm^3 voxels
        }

    # ---- images
    texture = unit_texture(rng_img, shape)
    modulation = 1.0 + np.take(_TEXTURE, tissue) * texture
    del texture
    wl_bias = max(8.0, 1.5 * mean_semi)
    images: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for m in MODALITIES:
        gain, lut = draw_intensities(m, rng_img)
        img = np.take(lut, tissue) * modulation
        img = ndimage.gaussian_filter(img, 0.6, truncate=3.0)  # partial volume at tissue borders
        img *= np.exp(np.float32(spec.bias) * smooth_noise(rng_img, shape, wl_bias))
        add_rician_noise(img, spec.noise * lut[WM], rng_img)
        if spec.skull_strip:
            img *= brain
            # 0 means "not brain" downstream (BraTS convention), so brain voxels stay > 0.
            np.maximum(img, np.float32(1e-3 * lut[WM]), out=img, where=brain)
        images[m] = img
        gains[m] = round(gain, 4)

    metadata: dict[str, Any] = {
        "shape": list(shape),
        "head_centre_world_mm": [round(float(v), 3) for v in centre_world],
        "cavity_semi_axes_mm": [round(float(v), 3) for v in semi],
        "rotation_deg": [round(float(v), 3) for v in angles],
        "ventricle_scale": round(vent_scale, 4),
        "modality_gain": gains,
        "skull_stripped": spec.skull_strip,
        "has_tumour": has_tumour,
        "tumour": tumour_meta,
    }
    return PhantomCase(
        images=images, seg=seg, brain_mask=brain, tissue=tissue, affine=affine, metadata=metadata
    )


def _lobe(c: np.ndarray) -> str:
    """Rough lobe of a head-frame point (for text prompts; the phantom has no atlas)."""
    _, ant, sup = c
    if ant > 0.2:
        return "frontal"
    if ant < -0.3:
        return "occipital"
    return "parietal" if sup > 0.15 else "temporal"


# --------------------------------------------------------------------------------------------
# data set


def write_phantom_dataset(
    out: str | Path,
    cases: int,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    seed: int = 0,
    tumour_fraction: float = 0.8,
    progress: bool = True,
    *,
    skull_strip: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``cases`` phantom heads in the BraTS 2023 GLI layout under ``out``; return case folders.

    The layout, manifest (``out/phantom.json``) and overwrite rules are
    :func:`medidiff.data.synthetic_set.write_case_dataset`'s.
    """
    from medidiff.config import to_dict

    check_dataset_args(cases, seed)
    spec = PhantomSpec(shape=shape, tumour_fraction=tumour_fraction, skull_strip=skull_strip)
    manifest = {
        "generator": GENERATOR,
        "medidiff_version": __version__,
        "spec": to_dict(spec),
        "spacing_mm": [1.0, 1.0, 1.0],
        "affine": brats_affine(spec.shape).tolist(),
        "skull_stripped": skull_strip,
        "tissues": {str(k): v for k, v in TISSUES.items()},
        "nominal_intensities": {m: list(v) for m, v in INTENSITIES.items()},
    }
    provenance = {
        "generator": GENERATOR,
        "shape": list(spec.shape),
        "tumour_fraction": spec.tumour_fraction,
        "skull_stripped": skull_strip,
    }
    return write_case_dataset(
        out,
        cases,
        seed,
        partial(_phantom_case, seed=seed, spec=spec),  # picklable: workers > 1 sends it to processes
        kind="a phantom",
        manifest_name=MANIFEST_NAME,
        manifest=manifest,
        provenance=provenance,
        progress=progress,
        workers=workers,
    )


def _phantom_case(index: int, *, seed: int, spec: PhantomSpec) -> PhantomCase:
    return make_phantom_case(case_seed(seed, index), tumour=None, spec=spec)
