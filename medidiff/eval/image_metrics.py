"""Image metrics: MS-SSIM diversity, MMD and Frechet distance on features, PSNR/SSIM (paired).

* **MS-SSIM diversity** (as in WDM and Pinaya et al. 2022, arXiv:2209.07162): mean MS-SSIM over
  random pairs of different cases of one set; lower is more diverse. Compare the synthetic value
  with the same number for real cases. MONAI's 3D MS-SSIM needs every side larger than
  ``(kernel - 1) * (scales - 1)**2`` voxels (5 scales with kernel 7: > 96), so
  :func:`msssim_settings` picks the most scales (then the largest kernel) the grid allows and the
  report records the choice; truncated scale weights are renormalised to sum to 1.
* **MMD** (Gretton et al. 2012, JMLR 13): :func:`mmd2` with a Gaussian kernel (median-heuristic
  bandwidth on the pooled samples, biased V-statistic: >= 0 and exactly 0 for identical sets) is
  the headline; ``kernel="linear", unbiased=True`` equals ``monai.metrics.MMDMetric`` (which can
  be negative and needs equal set sizes there; ours does not).
* **Frechet distance** (Heusel et al. 2017, arXiv:1706.08500): Gaussians fitted to two feature
  sets, ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` with scipy's ``sqrtm`` in float64. It
  is biased upwards for few samples: compare against the real-vs-real value at the same counts
  (:func:`floor_at_count`: seeded subsets of the real held-out cases the size of the synthetic set).
  One draw of a few dozen cases is itself noisy: :func:`frechet_jackknife` gives the synthetic
  figure a 95 % interval over its cases (delete-one jackknife; a bootstrap would resample duplicate
  cases, which inflate Frechet: +46 % on Gaussian features of the shipped feature net's size), and
  :func:`frechet_difference` compares two runs against one reference.
* **Precision, recall, density, coverage** (Kynkaanniemi et al. 2019, arXiv:1904.06991; Naeem et al. 2020,
  arXiv:2002.09797): :func:`prdc` splits what Frechet mixes: how many synthetic cases lie on the real
  manifold (precision, density) and how much of it they cover (recall, coverage), each read beside the
  real-vs-real floor at the same count (:func:`prdc_floor`, :func:`prdc_reading`).
* **PSNR / SSIM** for paired tasks (reconstruction, super-resolution): :func:`psnr` returns
  ``inf`` for identical inputs (MSE 0) rather than dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "MSSSIM_WEIGHTS",
    "msssim_settings",
    "ms_ssim",
    "ms_ssim_diversity",
    "ssim",
    "psnr",
    "mmd2",
    "frechet_distance",
    "frechet_distance_from_stats",
    "feature_distances",
    "floor_at_count",
    "frechet_jackknife",
    "frechet_difference",
    "frechet_reading",
    "PRDC_K",
    "PRDC_FLOOR_DRAWS",
    "prdc",
    "prdc_floor",
    "prdc_reading",
]

# Wang et al. 2003 scale weights, finest first
MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def msssim_settings(shape: Sequence[int], max_scales: int = 5) -> dict[str, Any]:
    """Scales, kernel size, sigma and weights MONAI's MS-SSIM accepts for spatial ``shape``.

    Prefers more scales, then the larger kernel (7, 5, 3). Also requires the coarsest scale
    (``side / 2**(scales-1)``) to hold the kernel. Raises ValueError for grids under 3 voxels.
    """
    side = min(int(s) for s in shape)
    for scales in range(max_scales, 0, -1):
        div = max(1, scales - 1) ** 2  # MONAI's size check (monai.metrics.regression.compute_ms_ssim)
        for kernel in (7, 5, 3):
            if side // div > kernel - 1 and side // 2 ** (scales - 1) >= kernel:
                w = np.array(MSSSIM_WEIGHTS[:scales], dtype=np.float64)
                return {
                    "scales": scales,
                    "kernel_size": kernel,
                    "kernel_sigma": 1.5 if kernel >= 5 else 1.0,
                    "weights": [float(v) for v in w / w.sum()],
                    "shape": [int(s) for s in shape],
                }
    raise ValueError(f"MS-SSIM needs every side >= 3 voxels, got {tuple(shape)}")


def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0, settings: dict[str, Any] | None = None
) -> torch.Tensor:
    """MS-SSIM of (B, C, X, Y, Z) pairs -> (B,), channels averaged. Inputs in [-1, 1] by default."""
    from monai.metrics.regression import compute_ms_ssim

    s = settings or msssim_settings(x.shape[2:])
    out = compute_ms_ssim(
        x.float(), y.float(), spatial_dims=x.ndim - 2, data_range=data_range,
        kernel_size=s["kernel_size"], kernel_sigma=s["kernel_sigma"], weights=s["weights"],
    )
    return out.reshape(-1)


def ms_ssim_diversity(
    images: torch.Tensor, *, pairs: int = 20, seed: int = 0, data_range: float = 2.0, batch_size: int = 4,
) -> dict[str, Any]:
    """Mean/std MS-SSIM over up to ``pairs`` random distinct pairs of (N, C, X, Y, Z) ``images``.

    All pairs are used when there are fewer than ``pairs``. Needs N >= 2.
    """
    n = int(images.shape[0])
    if n < 2:
        raise ValueError(f"MS-SSIM diversity needs >= 2 cases, got {n}")
    every = [(i, j) for i in range(n) for j in range(i + 1, n)]
    rng = np.random.default_rng(seed)
    chosen = every if len(every) <= pairs else [every[k] for k in rng.choice(len(every), pairs, replace=False)]
    settings = msssim_settings(images.shape[2:])
    vals = []
    for start in range(0, len(chosen), batch_size):
        block = chosen[start:start + batch_size]
        a = images[[i for i, _ in block]]
        b = images[[j for _, j in block]]
        vals.append(ms_ssim(a, b, data_range=data_range, settings=settings))
    v = torch.cat(vals).double().numpy()
    return {"mean": float(v.mean()), "std": float(v.std()), "pairs": len(chosen), "settings": settings}


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0) -> torch.Tensor:
    """Single-scale SSIM of (B, C, X, Y, Z) pairs -> (B,); the kernel shrinks for small grids."""
    from monai.metrics.regression import compute_ssim_and_cs

    side = min(int(s) for s in x.shape[2:])
    kernel = 11 if side >= 11 else (7 if side >= 7 else 3)
    val, _ = compute_ssim_and_cs(
        x.float(), y.float(), spatial_dims=x.ndim - 2, data_range=data_range,
        kernel_size=[kernel] * (x.ndim - 2), kernel_sigma=[1.5] * (x.ndim - 2),
    )
    return val.reshape(val.shape[0], -1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB of (B, ...) pairs -> (B,); ``inf`` where the pair is identical (MSE 0)."""
    mse = (x.double() - y.double()).flatten(1).pow(2).mean(1)
    out = torch.full_like(mse, float("inf"))
    pos = mse > 0
    out[pos] = 10.0 * torch.log10(data_range**2 / mse[pos])
    return out


def _as_2d(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    return t.reshape(t.shape[0], -1)


def mmd2(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    kernel: Literal["rbf", "linear"] = "rbf",
    unbiased: bool = False,
    bandwidth: float | None = None,
) -> float:
    """Squared MMD between samples ``x`` (N, D) and ``y`` (M, D).

    ``rbf``: k(a, b) = exp(-|a-b|^2 / (2 h^2)), h = ``bandwidth`` or the median pairwise distance
    of the pooled samples. ``unbiased`` drops the diagonal terms (U-statistic, needs N, M >= 2,
    can be negative); the biased V-statistic is >= 0 and 0 for identical sets.
    """
    a, b = _as_2d(x), _as_2d(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    n, m = a.shape[0], b.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"unbiased MMD needs >= 2 samples a side, got {n} and {m}")
    if kernel == "linear":
        kxx, kyy, kxy = a @ a.T, b @ b.T, a @ b.T
    elif kernel == "rbf":
        pooled = torch.cat([a, b])
        d2 = torch.cdist(pooled, pooled).pow(2)
        if bandwidth is None:
            off = d2[~torch.eye(len(pooled), dtype=torch.bool)]
            med = float(off.sqrt().median()) if off.numel() else 1.0
            bandwidth = med if med > 0 else 1.0
        k = torch.exp(-d2 / (2.0 * bandwidth**2))
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    else:
        raise ValueError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
    if unbiased:
        exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        exx, eyy = kxx.mean(), kyy.mean()
    return float(exx + eyy - 2.0 * kxy.mean())


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64, scipy sqrtm)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # nearly singular product (few samples in many dimensions): regularise as in pytorch-fid
        off = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)  # numerical noise leaves a tiny imaginary part
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def frechet_distance(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features ``x`` (N, D) and ``y`` (M, D), N, M >= 2."""
    a, b = _as_2d(x).numpy(), _as_2d(y).numpy()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"Frechet distance needs >= 2 samples a side, got {a.shape[0]} and {b.shape[0]}")
    return frechet_distance_from_stats(
        a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0), np.atleast_2d(np.cov(b, rowvar=False))
    )


def feature_distances(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """Frechet and MMD^2 (rbf, linear unbiased) between feature sets, or a note when a side has < 2 samples."""
    n = (int(x.shape[0]), int(y.shape[0]))
    if min(n) < 2:
        return {"n": list(n), "note": "needs >= 2 samples a side"}
    return {"n": list(n), "frechet": frechet_distance(x, y), "mmd2_rbf": mmd2(x, y, kernel="rbf"),
            "mmd2_linear": mmd2(x, y, kernel="linear", unbiased=True)}


def _subsets(total: int, cases: int, draws: int, seed: int) -> list[np.ndarray]:
    """The seeded subsets of ``cases`` of ``total`` a floor is read over: all when there are no more than
    ``cases``, every subset once when there are no more than ``draws`` (repeats would weight the median)."""
    import itertools

    if cases >= total:
        return [np.arange(total)]
    if math.comb(total, cases) <= draws:
        return [np.array(c) for c in itertools.combinations(range(total), cases)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(total, cases, replace=False)) for _ in range(max(1, draws))]


def floor_at_count(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, cases: int, *, draws: int, seed: int,
    rows_per_case: int = 1,
) -> dict[str, Any]:
    """The real-vs-real floor of :func:`feature_distances` at ``cases`` cases a side.

    ``x``: features of the real held-out cases (``rows_per_case`` consecutive rows a case, as 2.5D slab
    features come), ``y``: the reference (real training) features. Frechet and MMD fall as a sample
    grows, so a floor from all held-out cases beside a smaller synthetic set makes the synthetic set look
    worse than it is. This scores ``draws`` seeded random subsets of ``cases`` held-out cases (every
    subset once when there are no more than ``draws`` of them; all cases when there are no more than
    ``cases``) and returns each metric's median over the subsets scored, the Frechet range (min, max)
    and ``draws``, the count of subsets scored: the spread says how noisy a floor at this count is.
    """
    picks = _subsets(int(x.shape[0]) // rows_per_case, cases, draws, seed)
    xt = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    rows = [torch.as_tensor((p[:, None] * rows_per_case + np.arange(rows_per_case)).ravel()) for p in picks]
    runs = [feature_distances(xt[r], y) for r in rows]
    if "note" in runs[0]:
        return runs[0]
    out: dict[str, Any] = {"n": runs[0]["n"], "draws": len(runs)}
    for key in ("frechet", "mmd2_rbf", "mmd2_linear"):
        out[key] = float(np.median([r[key] for r in runs]))
    fr = [r["frechet"] for r in runs]
    out["frechet_range"] = [float(min(fr)), float(max(fr))]
    return out


def frechet_jackknife(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *, rows_per_case: int = 1
) -> dict[str, Any]:
    """A 95 % interval for the Frechet distance of ``x`` (the synthetic set) to the fixed ``y``, over x's cases.

    Delete-one jackknife (Efron & Stein; Quenouille): the figure with each case left out in turn (all its
    ``rows_per_case`` consecutive rows, as 2.5D slab features come), standard error
    ``sqrt((n - 1) / n * sum((F_i - mean F)^2))``, interval ``F +- 1.96 se`` (the lower end at 0): a 95 %
    interval for this generator's typical Frechet at this many cases (the median of such draws; Frechet's
    small-sample bias is the same for every draw of that size). Another single draw scatters wider
    (``+- 1.96 sqrt(2) se``), and two runs compare by their difference, :func:`frechet_difference`, not by
    whether their intervals overlap (a far stricter test). It holds for this reference ``y`` (fixed; another
    set of real cases would read otherwise) and covers the draw of generated cases only, not the spread between
    training runs of one recipe. Each left-out figure is kept (``frechet_leave_one_out``) for the paired
    difference. Checked on Gaussian and heavy-tailed features the shipped net's size (90 dimensions, 64 cases
    against 192; benchmarks/results/frechet_interval_cpu_20261205/): the interval held the median of fresh draws
    in 19 of 20 trials at the fresh draws' width, and 34 of 40 at 0.6 of it with 5 % outlier cases (there a lower
    bound on the noise); bootstrap intervals (cases drawn with replacement) never did, their repeated cases push
    Frechet up ~46 %. Needs >= 3 cases and a row count that is a multiple of ``rows_per_case``.
    """
    a = _as_2d(x).numpy()
    if a.shape[0] % rows_per_case:
        raise ValueError(f"{a.shape[0]} feature rows are not whole cases of {rows_per_case} rows")
    cases = a.shape[0] // rows_per_case
    if cases < 3:
        return {"note": f"a jackknife interval needs >= 3 cases, got {cases}"}
    b = _as_2d(y).numpy()
    mu_b, cov_b = b.mean(0), np.atleast_2d(np.cov(b, rowvar=False))
    full = frechet_distance_from_stats(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), mu_b, cov_b)
    left_out = []
    for c in range(cases):
        rest = np.delete(a, np.s_[c * rows_per_case:(c + 1) * rows_per_case], axis=0)
        left_out.append(frechet_distance_from_stats(rest.mean(0), np.atleast_2d(np.cov(rest, rowvar=False)),
                                                    mu_b, cov_b))
    f = np.asarray(left_out)
    se = float(math.sqrt((cases - 1) / cases * float(((f - f.mean()) ** 2).sum())))
    return {"frechet_se": se, "frechet_interval": [max(full - 1.96 * se, 0.0), full + 1.96 * se],
            "jackknife_cases": cases, "frechet_leave_one_out": [float(v) for v in f]}


def frechet_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
    """Run ``a``'s Frechet minus run ``b``'s against the same reference, with a 95 % interval over the draws of
    generated cases (rows of :func:`frechet_jackknife`).

    Both rows with their left-out figures at one count: the jackknife of the difference itself, case i left out
    of both (``sqrt((n - 1) / n * sum((d_i - mean d)^2))``, ``d_i = F_a,i - F_b,i``). Valid whether or not the
    cases are related (i.i.d. pairs are i.i.d. units), and narrower when they are: runs drawing images for the
    same label maps, or with the same noise, err together. Otherwise, from the two errors as independent draws,
    ``+- 1.96 sqrt(se_a^2 + se_b^2)``. None when either row lacks an error, or when the two were read at
    different counts (Frechet's small-sample bias differs with the count)."""
    if not all("frechet_se" in r and r.get("frechet") is not None for r in (a, b)):
        return None
    if a.get("jackknife_cases") != b.get("jackknife_cases"):
        return None
    diff = float(a["frechet"] - b["frechet"])
    la, lb = a.get("frechet_leave_one_out"), b.get("frechet_leave_one_out")
    if la is not None and lb is not None and len(la) == len(lb) >= 3:
        d = np.asarray(la, np.float64) - np.asarray(lb, np.float64)
        se, paired = math.sqrt((d.size - 1) / d.size * float(((d - d.mean()) ** 2).sum())), True
    else:
        se, paired = math.hypot(a["frechet_se"], b["frechet_se"]), False
    return {"difference": diff, "interval": [diff - 1.96 * se, diff + 1.96 * se], "paired": paired}


def frechet_reading(synthetic: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a synthetic Frechet distance says beside the floor of :func:`floor_at_count`: its ratio to
    the floor's median and whether it lies inside the range of the floor's real subsets. Inside that
    range, some real subset of the same size scored as far from the training cases: at this count the
    figure cannot separate the synthetic set from real (2026-12-02: 52.7 against a median of 11.9 whose
    20 subsets of 16 cases spanned 2.1-58.4). A synthetic row carrying :func:`frechet_jackknife`'s
    interval has it in the reading and as multiples of the floor's median. None without both figures."""
    syn, med, spread = synthetic.get("frechet"), floor.get("frechet"), floor.get("frechet_range")
    if syn is None or med is None or not (math.isfinite(syn) and math.isfinite(med)):
        return None
    out: dict[str, Any] = {"ratio_to_floor_median": float(syn / med) if med > 0 else math.inf}
    interval = synthetic.get("frechet_interval")
    own = ""
    if interval:  # frechet_jackknife's: the generator's typical figure at this count
        out["interval_over_floor_median"] = [float(v / med) if med > 0 else math.inf for v in interval]
        own = f" (95 % {interval[0]:#.3g}-{interval[1]:#.3g} over its cases: the generator's typical figure)"
    if spread:
        out["floor_range"] = [float(spread[0]), float(spread[1])]
        out["within_floor_range"] = bool(spread[0] <= syn <= spread[1])
        span = f"({spread[0]:#.3g}-{spread[1]:#.3g})"
        out["reading"] = (
            f"synthetic {syn:#.3g}{own} is {out['ratio_to_floor_median']:.2f}x the floor's median but inside the range of "
            f"its real subsets {span}: at this count it cannot separate the synthetic set from real"
            if out["within_floor_range"] else
            f"synthetic {syn:#.3g}{own} is {out['ratio_to_floor_median']:.2f}x the floor's median and "
            + ("above every" if syn > spread[1] else "below every") + f" real subset {span}")
    return out


PRDC_K = 5  # Naeem et al.'s choice; the balls of k = 5 neighbours hold for the few dozen cases a side here
# the floor's subsets: a real draw falls below all of n subsets about 1 / (n + 1) of the time, per judged figure;
# prdc is cheap, so more subsets than Frechet's floor takes
PRDC_FLOOR_DRAWS = 100


def _knn_radius(d: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row of the square distance matrix ``d``."""
    d = d.copy()
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def prdc(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *, k: int = PRDC_K) -> dict[str, Any]:
    """Precision, recall, density and coverage of synthetic features ``x`` (M, D) against real ``y`` (N, D).

    Each real case's ball reaches its k-th nearest real neighbour (each synthetic case's, its k-th nearest
    synthetic one). precision: share of synthetic cases inside some real ball (on the real manifold);
    recall: share of real cases inside some synthetic ball; density: mean count of real balls holding a
    synthetic case, over k (about 1 for a real-like set; it does not saturate as precision does); coverage:
    share of real cases whose ball holds a synthetic case (Naeem et al.: robust to outliers, and a collapsed
    generator covers a few balls however close it is). Features are scaled by the real cases' standard
    deviation first: the feature nets concatenate stages whose features differ in scale, and unscaled
    distances would read the largest stage only. Needs more than ``k`` cases a side. All four depend on the
    counts: read them beside :func:`prdc_floor` at the same counts."""
    a, b = _as_2d(x).numpy().astype(np.float64), _as_2d(y).numpy().astype(np.float64)
    if min(len(a), len(b)) <= k:
        return {"note": f"needs more than k = {k} cases a side, got {len(a)} and {len(b)}"}
    mu, sd = b.mean(0), b.std(0)
    sd[sd <= 1e-8 * max(float(sd.max()), 1e-300)] = 1.0  # a (nearly) constant feature is not blown up
    a, b = (a - mu) / sd, (b - mu) / sd

    def dist(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum((p**2).sum(1)[:, None] + (q**2).sum(1)[None] - 2.0 * p @ q.T, 0.0))

    real_r, syn_r = _knn_radius(dist(b, b), k), _knn_radius(dist(a, a), k)
    d = dist(b, a)  # (N real, M synthetic)
    inside = d <= real_r[:, None]
    return {"k": k, "n": [len(a), len(b)], "precision": float(inside.any(0).mean()),
            "recall": float((d <= syn_r[None]).any(1).mean()), "density": float(inside.sum() / (k * len(a))),
            "coverage": float(inside.any(1).mean())}


def prdc_floor(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, cases: int, *, draws: int, seed: int,
               k: int = PRDC_K) -> dict[str, Any]:
    """:func:`prdc` of ``cases`` real held-out cases ``x`` against the reference ``y``: the median and range of
    each over seeded subsets (picked as :func:`floor_at_count` picks its own), what a real set of the synthetic
    set's size scores. ``heldout``: how many cases the subsets were drawn from."""
    total = int(x.shape[0])
    runs = [prdc(_as_2d(x)[torch.as_tensor(p)], y, k=k) for p in _subsets(total, cases, draws, seed)]
    if "note" in runs[0]:
        return runs[0]
    out: dict[str, Any] = {"k": k, "n": runs[0]["n"], "draws": len(runs), "heldout": total}
    for key in ("precision", "recall", "density", "coverage"):
        v = [r[key] for r in runs]
        out[key], out[f"{key}_range"] = float(np.median(v)), [float(min(v)), float(max(v))]
    return out


def prdc_reading(synthetic: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, Any] | None:
    """Precision, recall and coverage beside the floor's real subsets: each fails below every real subset of
    the synthetic set's size. Each names another defect: precision, cases off the real manifold; recall, a set
    narrower than real (drawn toward the mean: in many dimensions such a set sits inside every real ball, so its
    coverage and precision read perfect and its density far above the floor's); coverage, a set collapsed onto a
    few cases. Density is reported, not judged. No verdict (no ``pass`` keys) unless the floor has
    ``PRDC_FLOOR_DRAWS`` subsets, each of at most half the held-out cases. None without both figures."""
    if "precision" not in synthetic or "precision_range" not in floor:
        return None
    out: dict[str, Any] = {}
    parts = []
    # subsets that share most of their cases span less than fresh real draws: their range is no yardstick
    verdict = floor["draws"] >= PRDC_FLOOR_DRAWS and 2 * floor["n"][0] <= floor.get("heldout", 0)
    for key, what in (("precision", "synthetic cases on the real manifold"),
                      ("recall", "real cases within the synthetic set's reach"),
                      ("coverage", "real cases with a synthetic case near")):
        lo, hi = floor[f"{key}_range"]
        below = bool(synthetic[key] < lo)
        if verdict:
            out[f"{key}_pass"] = not below
        parts.append(f"{key} {synthetic[key]:.2f} ({what}) against real subsets' {floor[key]:.2f} ({lo:.2f}-{hi:.2f}): "
                     + ("below every real subset" if below else "within or above"))
    lo, hi = floor["density_range"]
    parts.append(f"density {synthetic['density']:.2f} against {floor['density']:.2f} ({lo:.2f}-{hi:.2f})"
                 + (": above every real subset, a set packed where real cases are dense" if synthetic["density"] > hi else ""))
    if verdict:
        out["pass"] = out["precision_pass"] and out["recall_pass"] and out["coverage_pass"]
    else:
        parts.append(f"no verdict: the floor's {floor['draws']} subsets of {floor['n'][0]} share most of their "
                     f"{floor.get('heldout', '?')} held-out cases, so they span less than fresh real draws (a verdict "
                     f"needs {PRDC_FLOOR_DRAWS} subsets of at most half the held-out cases)")
    out["reading"] = "; ".join(parts)
    return out
