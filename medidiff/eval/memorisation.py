"""Nearest-neighbour memorisation audit: is a synthetic case a (near) copy of a training case?

Following Akbar et al. 2023 (arXiv:2305.07644) and Dar et al. 2023 (arXiv:2307.01148), every
synthetic case is compared with every training case by Pearson correlation of an embedding:

* ``image`` space (default): each modality area-downsampled to ``size^3`` (16^3 by default: the
  layout of the anatomy and the tumour, not the noise), z-scored per modality, concatenated;
* ``features`` space: the feature network of :mod:`medidiff.eval.features`.

The reference distribution is the training set's own nearest-neighbour similarity (each training
case vs all OTHER training cases): how close two different real subjects get.

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MemorisationResult", "image_embedding", "pearson_matrix", "reference_similarities", "audit"]


def image_embedding(images: torch.Tensor, size: int = 16) -> torch.Tensor:
    """(N, C, X, Y, Z) -> (N, C * size^3) float64: area-downsampled, z-scored per modality."""
    x = F.adaptive_avg_pool3d(images.double(), size)  # (N, C, s, s, s)
    x = x.flatten(2)
    x = (x - x.mean(2, keepdim=True)) / x.std(2, keepdim=True).clamp_min(1e-8)
    return x.flatten(1)


def pearson_matrix(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``a`` (N, D) with every row of ``b`` (M, D) -> (N, M)."""
    def unit(x: Any) -> np.ndarray:
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        x = x.reshape(x.shape[0], -1)
        x = x - x.mean(1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(a) @ unit(b).T


def reference_similarities(train: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each training case's NN similarity to the OTHER training cases: ``(similarity (N,), index (N,))``."""
    s = pearson_matrix(train, train)
    if s.shape[0] < 2:
        raise ValueError("the memorisation reference needs >= 2 training cases")
    np.fill_diagonal(s, -np.inf)
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
) -> MemorisationResult:
    """Audit embeddings ``synthetic`` (M, D) against ``train`` (N, D) (rule in the module doc)."""
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    ref, _ = reference_similarities(train)
    r_q = float(np.percentile(ref, percentile))
    threshold = 1.0 - margin * (1.0 - r_q)
    s = pearson_matrix(synthetic, train)
    sim, idx = s.max(1), s.argmax(1)
    result = MemorisationResult(threshold, r_q, ref, idx, sim, sim > threshold)
    if control is not None and len(control) > 0:
        cs = pearson_matrix(control, train).max(1)
        result.control_similarity, result.control_flagged = cs, cs > threshold
    return result
