"""Nearest-neighbour memorisation audit: is a synthetic case a (near) copy of a training case?

Following Akbar et al. 2023 (arXiv:2305.07644) and Dar et al. 2023 (arXiv:2307.01148), every
synthetic case is compared with every training case by Pearson correlation of an embedding:

* ``image`` space (default): the brain's bounding box (mask estimated as in
  :func:`medidiff.eval.realism.brain_masks`, so background grain cannot widen it) cropped and
  area-resampled to ``size^3`` per modality (16^3 by default: the layout of the anatomy and the
  tumour, not the noise), z-scored per modality, concatenated. (Ranks instead of values
  were tried: noise shuffles the ranks of flat tissue, and a noised copy fell to r 0.92.) Cropping to the brain makes the
  embedding blind to where the brain sits and how large it is, so shifted and rescaled (+-10 %)
  copies match their source;
* ``features`` space: the feature network of :mod:`medidiff.eval.features`.

Left-right mirrored and rotated copies: every training case is also compared in its mirrored form
and (image space) rotated by +-5 and +-10 degrees in each of the three planes (:data:`ROTATIONS`;
the similarity is the largest over the forms), for synthetic cases and for the reference alike. In
the recorded GPU run the audit without the mirror and the bounding box flagged 0 of 11 mirrored and
0 of 11 rescaled (x0.9) planted copies; without the rotations it caught 0 of 20 copies rotated 8
degrees on the anatomy data, whose cases are one template under warps and rotations of up to 10
degrees, so a small rotation moved a copy as far from its source as another case is.

The reference distribution is the training set's own nearest-neighbour similarity (each training
case vs all OTHER training cases and their mirrors): how close two different real subjects get.

Positive controls (:func:`plant_controls`): copies of training cases of every kind in
:data:`CONTROL_KINDS` (exact, shifted, rotated 8 degrees, mirrored, rescaled x0.9 and x1.1,
gamma 1.5, noised sigma 0.1) are audited with the same rule, and held-out real cases are the
negative control; the report states both rates for the data at hand.

Flagging rule. Let ``r_q`` be the ``percentile``-th percentile (default 99) of those training NN
similarities, and ``d_q = 1 - r_q`` its distance. A synthetic case with NN similarity ``r`` is
flagged when ``1 - r < margin * d_q`` (default margin 0.5), i.e. when it is at least twice as close
to a training case as (nearly) any two real subjects are. ``margin = 1`` is the plain percentile
rule; we default to 0.5 because with tens of training cases the top percentile of the reference is
a noisy estimate, and in our phantom measurements fresh cases exceeded the training maximum by
chance (NN r 0.902 vs max 0.883) while a copy sits at r = 1 and a noised copy (sigma 0.1 in the
[-1, 1] space) at r > 0.99. Held-out real cases, when given, are audited the same way as a control:
any of them flagged is a false positive of the rule on this data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medidiff.utils.threads import thread_map

__all__ = ["CONTROL_KINDS", "ROTATIONS", "MemorisationResult", "image_embedding", "image_embeddings", "training_forms",
           "plant_controls", "pearson_matrix", "reference_similarities", "audit", "control_rates"]


CONTROL_KINDS: tuple[str, ...] = (
    "exact", "shifted", "rotated", "mirrored", "rescaled_0.9", "rescaled_1.1", "intensity", "noised",
)
LR_AXIS = 0  # RAS: x runs right to left, so flipping it mirrors the head left-right


# Rotated forms of every training case the audit also matches: (plane, degrees); planes 0 axial
# (x, y), 1 coronal (x, z), 2 sagittal (y, z). A copy rotated by any angle within +-12 degrees is at
# most 2.5 degrees from one of these. Without them the audit caught 0 of 20 copies rotated 8 degrees
# on the anatomy data (its cases differ by warps of one template, so a small rotation moves a copy
# as far from its source as another case is).
ROTATIONS: tuple[tuple[int, float], ...] = tuple((plane, a) for plane in range(3) for a in (-10.0, -5.0, 5.0, 10.0))
_PLANES = ((0, 1), (0, 2), (1, 2))


def _rotate_box(x: torch.Tensor, extent: Sequence[int], plane: int, degrees: float) -> torch.Tensor:
    """Rotate (C, s, s, s) ``x`` -- a brain box of ``extent`` voxels resampled to a cube -- by
    ``degrees`` in ``plane`` about its centre, in voxel units (the box's aspect is undone, rotated
    and redone), linear interpolation, -1 (background) outside."""
    i, j = _PLANES[plane]
    theta = np.deg2rad(degrees)
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)
    scale = np.diag(np.asarray(extent, np.float64) / max(extent))
    m = np.linalg.inv(scale) @ rot.T @ scale  # output cube coords -> input cube coords
    # affine_grid orders coordinates (W, H, D) = (z, y, x): reverse both axes of the matrix
    m = m[::-1, ::-1].copy()
    affine = torch.zeros(1, 3, 4, dtype=x.dtype)
    affine[0, :, :3] = torch.from_numpy(m).to(x.dtype)
    grid = F.affine_grid(affine, [1, *x.shape], align_corners=False)
    return F.grid_sample((x + 1)[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0] - 1


def image_embeddings(
    images: torch.Tensor, size: int = 16, *, forms: Sequence[str | tuple[int, float]] = ("plain",)
) -> list[torch.Tensor]:
    """(N, C, X, Y, Z) in [-1, 1] -> one (N, C * size^3) float64 embedding per form: the brain's
    bounding box area-resampled to size^3, z-scored per modality. Forms: "plain", "mirror"
    (flipped left-right) or a (plane, degrees) rotation (:data:`ROTATIONS`; the box is resampled
    to 2 x size first, rotated, then pooled). The brain masks are estimated once for all forms."""
    from medidiff.eval.realism import brain_masks

    masks = brain_masks(images)

    def case_forms(i: int) -> list[torch.Tensor]:
        x = images[i].double()
        extent = list(x.shape[1:])
        if masks[i].any():
            lo = [int(a.min()) for a in np.nonzero(masks[i])]
            hi = [int(a.max()) + 1 for a in np.nonzero(masks[i])]
            x = x[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            extent = [b - a for a, b in zip(lo, hi)]
        pooled = F.adaptive_avg_pool3d(x[None], size)[0]  # (C, s, s, s)
        fine = None
        embs = []
        for form in forms:
            if form == "plain":
                embs.append(pooled)
            elif form == "mirror":
                embs.append(pooled.flip(1 + LR_AXIS))
            else:
                if fine is None:
                    fine = F.interpolate(x[None], size=(2 * size,) * 3, mode="area")[0]
                plane, degrees = form
                embs.append(F.avg_pool3d(_rotate_box(fine, extent, plane, degrees)[None], 2)[0])
        return embs

    per_form: list[list[torch.Tensor]] = [[] for _ in forms]
    with thread_map(case_forms, range(images.shape[0])) as results:  # one case per thread, in order
        for embs in results:
            for k, e in enumerate(embs):
                per_form[k].append(e)
    out = []
    for embs in per_form:
        e = torch.stack(embs).flatten(2)  # (N, C, s^3)
        e = (e - e.mean(2, keepdim=True)) / e.std(2, keepdim=True).clamp_min(1e-8)
        out.append(e.flatten(1))
    return out


def image_embedding(images: torch.Tensor, size: int = 16, *, mirror: bool = False) -> torch.Tensor:
    """(N, C, X, Y, Z) in [-1, 1] -> (N, C * size^3) float64: the brain's bounding box area-resampled
    to size^3, z-scored per modality; ``mirror`` flips it left-right first."""
    return image_embeddings(images, size, forms=("mirror" if mirror else "plain",))[0]


def training_forms(images: torch.Tensor, size: int = 16) -> list[torch.Tensor]:
    """The other forms of the training cases the image-space audit matches: mirrored, and rotated
    by each of :data:`ROTATIONS`."""
    return image_embeddings(images, size, forms=("mirror", *ROTATIONS))


def plant_controls(
    images: torch.Tensor, kinds: tuple[str, ...] = CONTROL_KINDS, *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Planted copies of (N, C, X, Y, Z) cases in [-1, 1], one (N, C, ...) tensor per kind.

    Geometric kinds resample with linear interpolation and fill with the background value -1:
    shifted by ~6 % of each side, rotated 8 degrees in the axial plane, mirrored left-right,
    rescaled about the brain's centre; ``intensity`` is gamma 1.5 on (x+1)/2; ``noised`` adds
    Gaussian noise of sigma 0.1 everywhere (the background too).
    """
    from scipy import ndimage

    from medidiff.eval.realism import brain_masks

    x = images.detach().cpu().double().numpy()
    rng = np.random.default_rng(seed)
    masks = brain_masks(images)
    spatial = x.shape[2:]

    def per_channel(fn: Any) -> np.ndarray:  # scipy's resampling releases the GIL: a case per thread
        with thread_map(lambda i: [fn(i, x[i, c]) for c in range(x.shape[1])], range(x.shape[0])) as cases:
            return np.stack(list(cases))

    def zoom(factor: float) -> Any:
        def f(i: int, v: np.ndarray) -> np.ndarray:
            centre = np.array([a.mean() for a in np.nonzero(masks[i])]) if masks[i].any() else (np.array(spatial) - 1) / 2
            matrix = np.eye(3) / factor  # output voxel o samples input centre + (o - centre) / factor
            return ndimage.affine_transform(v, matrix, offset=centre - matrix @ centre, order=1, cval=-1.0)
        return f

    shift = [max(1, round(0.06 * s)) * sign for s, sign in zip(spatial, (1, -1, 1))]
    makers: dict[str, Any] = {
        "exact": lambda: x.copy(),
        "shifted": lambda: per_channel(lambda i, v: ndimage.shift(v, shift, order=0, cval=-1.0)),
        "rotated": lambda: per_channel(lambda i, v: ndimage.rotate(v, 8.0, axes=(0, 1), reshape=False, order=1, cval=-1.0)),
        "mirrored": lambda: np.flip(x, axis=2 + LR_AXIS).copy(),
        "rescaled_0.9": lambda: per_channel(zoom(0.9)),
        "rescaled_1.1": lambda: per_channel(zoom(1.1)),
        "intensity": lambda: ((x + 1) / 2) ** 1.5 * 2 - 1,
        "noised": lambda: np.clip(x + rng.normal(0.0, 0.1, x.shape), -1, 1),
    }
    unknown = [k for k in kinds if k not in makers]
    if unknown:
        raise ValueError(f"unknown control kinds {unknown}; choose from {list(makers)}")
    return {k: torch.from_numpy(makers[k]()).float() for k in kinds}


def pearson_matrix(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``a`` (N, D) with every row of ``b`` (M, D) -> (N, M)."""
    def unit(x: Any) -> np.ndarray:
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        x = x.reshape(x.shape[0], -1)
        x = x - x.mean(1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(a) @ unit(b).T


def _best(a: Any, train: Any, train_alt: Sequence[Any]) -> np.ndarray:
    """(M, N) similarity of every row of ``a`` to every training case, in any of its forms."""
    s = pearson_matrix(a, train)
    for alt in train_alt:
        s = np.maximum(s, pearson_matrix(a, alt))
    return s


def reference_similarities(
    train: torch.Tensor | np.ndarray, train_alt: Sequence[torch.Tensor | np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Each training case's NN similarity to the OTHER training cases (in any of their forms
    ``train_alt``, e.g. mirrored): ``(similarity (N,), index (N,))``."""
    s = _best(train, train, train_alt)
    if s.shape[0] < 2:
        raise ValueError("the memorisation reference needs >= 2 training cases")
    np.fill_diagonal(s, -np.inf)  # a case's own mirror is not another subject
    return s.max(1), s.argmax(1)


@dataclass
class MemorisationResult:
    """Per query case: nearest training case index and similarity, and whether it is flagged."""

    threshold: float  # flagged when similarity > threshold
    reference_percentile_value: float  # r_q
    reference: np.ndarray  # (N_train,) training NN similarities
    nn_index: np.ndarray  # (M,)
    similarity: np.ndarray  # (M,)
    flagged: np.ndarray  # (M,) bool
    control_similarity: np.ndarray | None = None  # held-out real cases, same rule
    control_flagged: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "reference_percentile_value": self.reference_percentile_value,
            "reference_nn_similarity": {
                "min": float(self.reference.min()), "median": float(np.median(self.reference)),
                "max": float(self.reference.max()), "n": int(self.reference.size),
            },
            "synthetic_nn_similarity": {
                "min": float(self.similarity.min()), "median": float(np.median(self.similarity)),
                "max": float(self.similarity.max()), "n": int(self.similarity.size),
            },
            "flagged": int(self.flagged.sum()),
        }
        if self.control_similarity is not None and self.control_flagged is not None:
            out["control_heldout_real"] = {
                "max_nn_similarity": float(self.control_similarity.max()),
                "flagged": int(self.control_flagged.sum()),
                "n": int(self.control_similarity.size),
            }
        return out


def audit(
    train: torch.Tensor | np.ndarray,
    synthetic: torch.Tensor | np.ndarray,
    *,
    percentile: float = 99.0,
    margin: float = 0.5,
    control: torch.Tensor | np.ndarray | None = None,
    train_alt: Sequence[torch.Tensor | np.ndarray] = (),
) -> MemorisationResult:
    """Audit embeddings ``synthetic`` (M, D) against ``train`` (N, D) (rule in the module doc);
    ``train_alt``: other forms of the same training cases (e.g. mirrored), matched too."""
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    ref, _ = reference_similarities(train, train_alt)
    r_q = float(np.percentile(ref, percentile))
    threshold = 1.0 - margin * (1.0 - r_q)
    s = _best(synthetic, train, train_alt)
    sim, idx = s.max(1), s.argmax(1)
    result = MemorisationResult(threshold, r_q, ref, idx, sim, sim > threshold)
    if control is not None and len(control) > 0:
        cs = _best(control, train, train_alt).max(1)
        result.control_similarity, result.control_flagged = cs, cs > threshold
    return result


def control_rates(
    embed: Any, train_images: torch.Tensor, heldout_images: torch.Tensor | None, *,
    percentile: float = 99.0, margin: float = 0.5, max_cases: int = 20, seed: int = 0,
    kinds: tuple[str, ...] = CONTROL_KINDS, train_embeddings: tuple[Any, Sequence[Any]] | None = None,
    heldout_embedding: Any = None,
) -> dict[str, Any]:
    """The audit's detection rate per planted kind (copies of up to ``max_cases`` training cases)
    and its false-positive rate on held-out real cases. ``embed(images) -> (N, D)``;
    ``train_embeddings``: the training cases' embedding and the other forms of them the audit
    matches (e.g. ``(embed(x), training_forms(x))``: the audit's own, which are not cheap), default
    ``(embed(x), [embed(x, mirror=True)])``; ``heldout_embedding``: ``embed(heldout_images)`` when
    the caller has it."""
    if train_embeddings is None:
        train_embeddings = (embed(train_images), [embed(train_images, mirror=True)])
    e_train, alt = train_embeddings[0], list(train_embeddings[1])
    pick = np.random.default_rng(seed).permutation(len(train_images))[:max_cases]
    planted = plant_controls(train_images[torch.as_tensor(pick)], kinds, seed=seed)
    rates: dict[str, Any] = {}
    for kind, imgs in planted.items():
        r = audit(e_train, embed(imgs), percentile=percentile, margin=margin, train_alt=alt)
        hit = r.flagged & (r.nn_index == pick)  # flagged AND matched to its own source
        rates[kind] = {"flagged": int(hit.sum()), "n": len(pick), "rate": float(hit.mean()),
                       "min_similarity": float(r.similarity.min())}
    out: dict[str, Any] = {"planted": rates}
    if heldout_images is not None and len(heldout_images) > 0:
        e_held = embed(heldout_images) if heldout_embedding is None else heldout_embedding
        r = audit(e_train, e_held, percentile=percentile, margin=margin, train_alt=alt)
        out["heldout_real"] = {"flagged": int(r.flagged.sum()), "n": int(r.flagged.size),
                               "rate": float(r.flagged.mean()), "max_similarity": float(r.similarity.max())}
    return out
