"""Issue 16: is a run's Frechet a property of the trained model or of the draw of its cases, and does picking the
best of several runs (seeds of one recipe) by one draw of their cases hold on another draw?

Why: two seeds of one recipe read Frechet 3.5x and 10.9x of the held-out floor (quality_scaleout_h100_20261206),
a gap as large as the recipe changes read. If the gap is the model's, training k seeds and keeping the best is a
lever; if it is the draw's, it is noise. A pick judged on the draw it was picked by is biased low (the winner's
curse), so here each run's generated cases are split at random into halves A and B: the pick is the run with the
lowest Frechet on A, judged on B, beside the mean of every run's B (what a run taken blind gives) and the best B.
Over ``--splits`` random splits: how often each run is picked, the judged gain (mean B minus the pick's B; 0 in
expectation when the runs do not differ), and each run's A-to-B difference (the draw's part) beside the spread
between runs. The splits re-cut one draw of each run's cases: they are not independent, and the median over them
keeps that draw's sampling noise (three equal runs of 60 cases in the test gain 0.12 at a floor of 0.54, against
2.5 for a run shifted off the real features). Whether two runs differ is the paired interval's question
(``image_metrics.frechet_difference``, which quality_scale's report gives for every pair): the splits say how far a
pick by one half holds on the other, not whether it is resolved.
Every run is read at one count: runs with more cases are cut to the smallest run's count (a seeded random subset:
Frechet falls as the count rises, so a larger run would be picked for its size). Every Frechet here is at half that
count against every real training case, beside the held-out floor at the same count
(``image_metrics.floor_at_count``), so the ratios do not compare with the reports' at the whole count (Frechet's
small-sample bias grows as the count falls).

Reads what ``quality_common.image_evaluations_of`` keeps: ``EVAL/<run>/features.npz`` (``synthetic``) and
``EVAL/real_features.npz`` (``train``, ``heldout``), the same feature net's 3D features.

    python3 benchmarks/seed_pick.py --eval OUT/quality_scale/eval --runs RUN1 RUN2 RUN3 --out pick.json > pick.md
    python3 benchmarks/seed_pick.py --eval OUT/eval --runs RUN1 OTHER_JOB/eval/RUN2   # runs of two jobs, one real side
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.eval.image_metrics import floor_at_count, frechet_distance


def pick_by_halves(synthetic: Mapping[str, np.ndarray], real_train: np.ndarray, real_heldout: np.ndarray | None = None,
                   *, splits: int = 20, floor_draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """Pick one of ``synthetic``'s runs (name -> cases x features) by half A of its cases, judge it on half B.

    Every run is first cut to the smallest run's count (:func:`common_count`). Each split draws one random half of
    every run's cases (its own permutation: the runs' cases are not paired) as A and another, disjoint half as B (an
    odd count leaves one case out), and reads Frechet against ``real_train`` on both. Returns per run the median A
    and B Frechet, how often it was picked and the median |A - B| (the draw's part); per split the pick, its B, the
    mean B of every run and the best B; and, with ``real_heldout``, the floor at the half count
    (``image_metrics.floor_at_count``, ``floor_draws`` seeded subsets; its draws are heavy-tailed: 0.3-32 at 96 on
    the anatomy set). Needs >= 2 runs of >= 4 cases each."""
    names = list(synthetic)
    if len(names) < 2:
        raise ValueError(f"picking needs >= 2 runs, got {names}")
    small = [n for n in names if synthetic[n].shape[0] < 4]
    if small:
        raise ValueError(f"runs with fewer than 4 cases cannot be split in halves: {small}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    count, synthetic = common_count(synthetic, seed)
    half = count // 2
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(splits):
        a, b = {}, {}
        for name in names:
            x = synthetic[name]
            order = rng.permutation(count)
            a[name] = frechet_distance(x[order[:half]], real_train)
            b[name] = frechet_distance(x[order[half:2 * half]], real_train)
        picked = min(names, key=a.__getitem__)
        mean_b = float(np.mean(list(b.values())))
        rows.append({"A": a, "B": b, "picked": picked, "picked_B": b[picked], "mean_B": mean_b,
                     "best_B": min(b.values()), "gain": mean_b - b[picked]})
    runs = {name: {"cases": count,
                   "frechet_A_median": float(np.median([r["A"][name] for r in rows])),
                   "frechet_B_median": float(np.median([r["B"][name] for r in rows])),
                   "draw_part_median_abs_A_minus_B": float(np.median([abs(r["A"][name] - r["B"][name]) for r in rows])),
                   "picked": sum(r["picked"] == name for r in rows)} for name in names}
    gains = [r["gain"] for r in rows]
    medians_b = [runs[n]["frechet_B_median"] for n in names]
    out: dict[str, Any] = {
        "splits": splits, "seed": seed, "count": count, "half": half, "runs": runs,
        "between_runs_range_of_B_medians": float(max(medians_b) - min(medians_b)),
        "gain_median": float(np.median(gains)), "gain_range": [float(min(gains)), float(max(gains))],
        "per_split": rows}
    if real_heldout is not None and real_heldout.shape[0] >= 2:
        if floor_draws < 1:
            raise ValueError(f"floor_draws must be >= 1, got {floor_draws}")
        floor = floor_at_count(real_heldout, real_train, half, draws=floor_draws, seed=seed + 1)
        out["floor_at_half"] = {"count": min(half, real_heldout.shape[0]), "draws": floor["draws"],
                                "median": floor["frechet"], "range": floor["frechet_range"]}
        if real_heldout.shape[0] < half:
            out["floor_at_half"]["note"] = (f"only {real_heldout.shape[0]} held-out cases: the floor is at that "
                                            f"count, not at the half ({half}), and reads high against it")
    return out


def common_count(synthetic: Mapping[str, np.ndarray], seed: int = 0) -> tuple[int, dict[str, np.ndarray]]:
    """(the smallest run's count, every run cut to it): a larger run keeps a seeded random subset of its cases."""
    count = min(x.shape[0] for x in synthetic.values())
    rng = np.random.default_rng(seed + 2)
    return count, {name: x if x.shape[0] == count else x[np.sort(rng.choice(x.shape[0], count, replace=False))]
                   for name, x in synthetic.items()}


def pick_rate_by_count(synthetic: Mapping[str, np.ndarray], real_train: np.ndarray, counts: Sequence[int], *,
                       draws: int = 100, seed: int = 0) -> dict[int, dict[str, float]]:
    """How often each run is picked (lowest Frechet against ``real_train``) when every run shows only ``n`` of its
    cases, drawn at random ``draws`` times, for each ``n`` in ``counts``: a guide to how many generated cases a
    pick between these runs needs (a lease's budget). The subsets re-sample one draw of each run's cases, so the
    rates are conditional on that draw and overconfident as ``n`` nears its size: counts above half the smallest
    run's cases are skipped."""
    rng = np.random.default_rng(seed)
    names = list(synthetic)
    limit = min(x.shape[0] for x in synthetic.values()) // 2
    out: dict[int, dict[str, float]] = {}
    for n in counts:
        if n < 2 or n > limit:
            continue
        picked = [min(names, key=lambda name: frechet_distance(
            synthetic[name][rng.choice(synthetic[name].shape[0], n, replace=False)], real_train)) for _ in range(draws)]
        out[n] = {name: picked.count(name) / draws for name in names}
    return out


def report(result: Mapping[str, Any]) -> str:
    """The reading as markdown lines."""
    floor = result.get("floor_at_half")
    lines = [f"Pick by half A, judge on half B ({result['splits']} random splits; Frechet at {result['half']} cases, "
             f"half of {result['count']} a run, against every real training case)"]
    if floor:
        lines.append(f"held-out floor at {floor['count']} cases ({floor['draws']} draws): median {floor['median']:.2f}, "
                     f"range {floor['range'][0]:.2f}-{floor['range'][1]:.2f}" + (f" ({floor['note']})" if "note" in floor else ""))
    lines.append("| run | A median | B median | median abs(A - B) | picked |")
    lines.append("|---|---|---|---|---|")
    for name, r in result["runs"].items():
        lines.append(f"| {name} | {r['frechet_A_median']:.2f} | {r['frechet_B_median']:.2f} | "
                     f"{r['draw_part_median_abs_A_minus_B']:.2f} | {r['picked']} of {result['splits']} |")
    lines.append(f"between runs: B medians span {result['between_runs_range_of_B_medians']:.2f}; the pick's B below "
                 f"the runs' mean B by {result['gain_median']:.2f} (median; range {result['gain_range'][0]:.2f} to "
                 f"{result['gain_range'][1]:.2f})")
    rates = result.get("pick_rate_by_count")
    if rates:
        lines += ["", "share of draws picking each run when each shows n of its cases (Frechet against every real "
                      "training case):", "", "| n | " + " | ".join(result["runs"]) + " |",
                  "|---|" + "---|" * len(result["runs"])]
        lines += [f"| {n} | " + " | ".join(f"{share:.2f}" for share in row.values()) + " |" for n, row in rates.items()]
    return "\n".join(lines)


def _same_real_side(real: Any, other: Path) -> None:
    """Refuse (ValueError) a run of another job unless its job's real features are ``real``'s: Frechet figures of
    two jobs compare only against the same real cases through the same feature net (this checks the real side only;
    the generated side's evaluation settings are the jobs' own). Equal to rtol 1e-4 and atol 1e-4, not bit for bit: two leases' GPUs read the same cases through the same net to 6-7 digits (the shipped model's
    Frechet 12.772485 in session 52, 12.772477 in 54), another net or other cases differ in the first digit."""
    theirs = np.load(other)
    if any(real[k].shape != theirs[k].shape or not np.allclose(real[k], theirs[k], rtol=1e-4, atol=1e-4)
           for k in ("train", "heldout")):
        raise ValueError(f"{other}: another real side (other real cases or another feature net) than --eval's")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (quality_scale's --steps too)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", type=Path, required=True, help="quality_scale's OUT/eval (real_features.npz, <run>/)")
    ap.add_argument("--runs", nargs="+", required=True,
                    help="run names (folders of --eval with features.npz) or folders of another job's eval/ whose "
                         "real_features.npz is --eval's (the same real cases and feature net): runs of several jobs")
    ap.add_argument("--splits", type=positive_int, default=20)
    ap.add_argument("--floor-draws", type=positive_int, default=200)
    ap.add_argument("--counts", type=int, nargs="*", default=[],
                    help="also: how often each run is picked when each shows only n cases (100 draws a count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="the JSON reading")
    args = ap.parse_args(argv)
    try:
        real = np.load(args.eval / "real_features.npz")
        synthetic = {}
        for run in args.runs:
            folder = args.eval / run if "/" not in run else Path(run)
            if folder.name in synthetic:
                raise ValueError(f"{folder}: a second run named {folder.name} (rename one job's folder to pool them)")
            if folder.parent.resolve() != args.eval.resolve():
                _same_real_side(real, folder.parent / "real_features.npz")
            synthetic[folder.name] = np.load(folder / "features.npz")["synthetic"]
        result = pick_by_halves(synthetic, real["train"], real["heldout"] if real["heldout"].size else None,
                                splits=args.splits, floor_draws=args.floor_draws, seed=args.seed)
        if args.counts:
            result["pick_rate_by_count"] = pick_rate_by_count(synthetic, real["train"], args.counts, seed=args.seed)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        print(f"seed_pick: {exc}", file=sys.stderr)
        return 2
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
