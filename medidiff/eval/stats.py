"""Bootstrap intervals over test cases and segmenter seeds.

A utility number has two sources of chance: which real cases happen to be in the test fold, and
how the segmenter's training went (its seed). The recorded run gave one std over 2 seeds and
nothing over cases, which could not tell 0.75 from 0.77. :func:`bootstrap_ci` resamples both at
once (a two-way bootstrap: seeds with replacement, cases with replacement, the mean of the
selected block), the percentile interval of Efron & Tibshirani (1993, ch. 13).

Paired differences: for the same seed and test case, ``score(synthetic-trained) -
score(real-trained)``; resampling the pairs keeps the case-to-case correlation, so the interval is
much narrower than the two sets' intervals suggest. An interval that excludes 0 is a difference
this data and seed count can see; one that includes 0 is not evidence of equality.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "summarise_matrix"]


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the mean of ``values`` (S seeds, N cases), resampling seeds and
    cases independently with replacement. Non-finite entries are an error (penalise them first)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"values must be (seeds, cases) and non-empty, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("bootstrap_ci needs finite values (apply the HD95 penalty first)")
    s, n = v.shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, s, size=(resamples, s))
    ci = rng.integers(0, n, size=(resamples, n))
    # mean over the selected block = mean over selected seeds of (mean over selected cases)
    case_means = v[:, ci].mean(axis=2)  # (S, R): each seed's mean over each resample's cases
    means = np.take_along_axis(case_means.T, si, axis=1).mean(axis=1)  # (R,)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(lo), float(hi)


def summarise_matrix(values: np.ndarray, *, resamples: int, seed: int = 0) -> dict[str, Any]:
    """``{"mean", "ci95": [low, high], "std_over_seeds"}`` of a (seeds, cases) score matrix."""
    mean, lo, hi = bootstrap_ci(values, resamples=resamples, seed=seed)
    per_seed = np.asarray(values, np.float64).mean(axis=1)
    return {"mean": mean, "ci95": [lo, hi], "std_over_seeds": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0}
