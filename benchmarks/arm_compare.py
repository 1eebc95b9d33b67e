"""One recipe arm's seeds beside a baseline's, read from `quality_scale` records: the table of every run's
measures, permutation tests of the arm against the baseline over the runs (seeds are independent training runs),
and run-against-run Frechet differences paired case by case (the same case seeds).

A record's compare.py names its runs and calls :func:`report`; the records before session 60 carry their own
copies of this logic (frozen with their figures).
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.eval.image_metrics import frechet_difference

MODS = ("t1n", "t1c", "t2w", "t2f")
Run = tuple[str, int]  # (arm label, training seed)

# (label, quality_scale per-run key, digits) of the table; {floor_<m>} is filled from the first run
ROWS: tuple[tuple[str, str, int], ...] = (
    ("Frechet 3D / floor (goal <= 3)", "frechet_over_floor", 2), ("Frechet 3D", "frechet_3d", 2),
    ("  95 % jackknife low", "frechet_3d_low", 2), ("  95 % jackknife high", "frechet_3d_high", 2),
    ("precision", "prdc_precision", 3), ("recall", "prdc_recall", 3), ("density", "prdc_density", 3),
    ("coverage", "prdc_coverage", 3), ("loss, last 200 steps", "loss_last_200", 5),
    ("background RMS outside the head, written scale (goal <= 0.02)", "background_rms", 4),
    ("background RMS outside the brain (evaluate's)", "eval_background_rms", 4),
    *[(f"detail coherence vs real {m} (< 0 grain, > 0 blur)", f"coherence_vs_real_{m}", 3) for m in MODS],
    *[(f"spectrum max abs log10 {m} (goal <= 0.30)", f"spectrum_max_abs_log10_{m}", 2) for m in MODS],
    *[(f"spectrum top band power ratio {m} (goal 0.5-2)", f"spectrum_top_band_ratio_{m}", 2) for m in MODS],
    *[(f"histogram W1 {m} (floor {{floor_{m}}})", f"histogram_w1_{m}", 3) for m in MODS],
    *[(f"histogram W1 {m}, outside-the-tumour scale", f"histogram_w1_outside_tumour_{m}", 3) for m in MODS],
    ("spread across cases, all (real: the floor's median 0.99)", "spread_all", 2),
    ("spread of brain sizes over real's", "spread_brain_size", 2),
    *[(f"spread of {m} levels over real's", f"spread_level_{m}", 2) for m in MODS],
    *[(f"ET median - normal brain, synthetic - real, {m} (outside-the-tumour scale)", f"et_contrast_vs_real_{m}", 3)
      for m in ("t1c", "t2f")],
    # (the real side's figures are rows of their own: the image phase's and the realism phase's real sides differ)
    ("tumour share", "tumour_share", 3), ("  the real training cases'", "tumour_share_real", 3),
    ("tumour sizes' W1", "tumour_size_w1", 3), ("tumour sizes pass (1)", "tumour_size_pass", 0),
    ("share with two or more tumours", "tumour_several_share", 3),
    ("  the real training cases'", "tumour_several_share_real", 3),
    ("share with a necrotic core", "core_present_share", 3), ("  the real training cases'", "core_present_share_real", 3),
    ("core voxels / WT voxels, median log10, synthetic - real", "core_share_of_wt_vs_real", 3),
    ("tumour contrast passes (1; brain scale)", "tumour_contrast_pass", 0),
    ("brain sizes' W1", "brain_size_w1", 3),
)


def load_runs(results: Path, records: Mapping[Run, tuple[str, str]]) -> dict[Run, dict[str, Any]]:
    """``records``: (arm, seed) -> (record folder under ``results``, run-name pattern with ``{}`` for the seed).
    Each run's quality_scale per-run row with its Frechet leave-one-out figures (None without them) and its
    record's name."""
    out = {}
    for (arm, seed), (folder, pattern) in records.items():
        rec = json.loads((results / folder / "quality_scale.json").read_text())
        run = pattern.format(seed)
        # no left-out figures where the job's image phase did not finish: paired() then refuses the run
        loo = rec.get("frechet_leave_one_out", {}).get(run)
        # records before session 61 lack realism_source: their image phase, where it finished, read the realism
        # rows too (it left Frechet figures), else the realism phase did
        source = rec.get("realism_source", {}).get(run, "image" if loo else "realism")
        out[(arm, seed)] = {**rec["per_run"][run], "leave_one_out": loo, "realism_source": source, "record": folder}
    return out


def load_realism_phase_runs(results: Path, records: Mapping[Run, tuple[str, str]]
                            ) -> tuple[dict[Run, dict[str, Any]], dict[Run, dict[str, list[float]]]]:
    """Each run of ``records`` (as :func:`load_runs` takes them) read from its realism phase alone (the job's
    ``--realism-cases`` real training cases), whatever real side its record's ``per_run`` rows read: its
    quality_scale rows (steps, loss and background from ``seeds/<run>.json``) and its per-band log10 spectra per
    modality. For a table across jobs where some image phases were cut. Refuses a run without a realism phase and
    runs whose realism phases read different real sides (the real tumour share and counts)."""
    import quality_scale as qs  # a benchmarks script beside this one (imported late: it pulls in the trainer)

    runs, bands, sides = {}, {}, set()
    for (arm, seed), (folder, pattern) in records.items():
        root, run = results / folder, pattern.format(seed)
        reports = {k: v for k, v in qs.phase_reports(root, run).items() if k in ("realism", qs.NORMAL_BRAIN_REALISM)}
        if qs.realism_source(reports) != "realism":
            raise ValueError(f"{folder}: {run} has no realism phase")
        seeds = json.loads((root / "seeds" / f"{run}.json").read_text())
        m = {k: float(seeds[k]) for k in ("steps", "loss_last_200")} | seeds["background"]
        real = reports["realism"]["results"]["realism"]
        runs[(arm, seed)] = m | qs.eval_metrics(*reports.values()) | {"record": folder, "realism_source": "realism"}
        bands[(arm, seed)] = qs.realism_bands(reports)
        sides.add((real["checks"]["tumour_statistics"]["share_with_tumour"]["real"], json.dumps(real["counts"])))
    if len(sides) > 1:
        raise ValueError(f"the realism phases read different real sides: {sorted(sides)}")
    return runs, bands


def check_one_instrument(runs: Mapping[Run, Mapping[str, Any]], features: Path, reference: Path, cases: int) -> str:
    """Refuse runs read by different instruments: one Frechet floor, ``cases`` generated cases each, and the real
    side's features (``eval/real_features.npz``) bitwise those of ``reference``'s record. Returns a note for the
    report."""
    floors = [m["frechet_3d_floor"] for m in runs.values()]
    if max(floors) - min(floors) > 1e-5 * min(floors):
        raise ValueError(f"the runs were read against different floors: {sorted(set(floors))}")
    counts = {m["frechet_3d_cases"] for m in runs.values()}
    if counts != {cases}:
        raise ValueError(f"the runs' Frechet was read at {sorted(counts)} cases, not {cases}")
    mine, theirs = np.load(features), np.load(reference)
    gap = max(float(np.abs(mine[k] - theirs[k]).max()) for k in ("train", "heldout"))
    if gap != 0.0:
        raise ValueError(f"another real side: features {gap:.1e} apart from {reference}")
    return f"<!-- real features against {reference.parent.parent.name}: bitwise equal -->"


def table(runs: Mapping[Run, Mapping[str, Any]], rows: Sequence[tuple[str, str, int]] = ROWS) -> list[str]:
    """Markdown table, one column a run; n/a where the run's record lacks the measure. Refuses runs whose realism
    rows read different real sides (``realism_source``: the image phase's against the realism phase's)."""
    sources = {m.get("realism_source") for m in runs.values()} - {None}
    if len(sources) > 1:
        raise ValueError("the runs' realism rows read different real sides: " + ", ".join(
            f"{a} seed {s} {m.get('realism_source')}" for (a, s), m in runs.items()) +
            "; read every run from its realism phase's reports")
    first = next(iter(runs.values()))
    floors = {f"floor_{m}": f"{first.get(f'histogram_w1_floor_{m}', float('nan')):.3f}" for m in MODS}
    names = list(runs)
    lines = ["| measure | " + " | ".join(f"{a} seed {s}" for a, s in names) + " |", "|---|" + "---|" * len(names)]
    for label, key, digits in rows:
        cells = ("n/a" if runs[n].get(key) is None else f"{float(runs[n][key]):.{digits}f}" for n in names)
        lines.append(f"| {label.format(**floors)} | " + " | ".join(cells) + " |")
    return lines


def permutation(runs: Mapping[Run, Mapping[str, Any]], arm: str, baseline: str, key: str,
                log: bool = False) -> tuple[float, int, int]:
    """Two-sided permutation test of ``arm``'s runs against ``baseline``'s on ``key`` (log10 when ``log``): the
    share of the ways to split the pooled runs into the arm's count whose gap in means is as wide as the arms'.
    Returns (p, splits as wide, splits)."""
    names = [n for n in runs if n[0] in (arm, baseline)]
    value = {n: (math.log10(runs[n][key]) if log else float(runs[n][key])) for n in names}
    size = sum(n[0] == arm for n in names)

    def gap(pick: Sequence[Run]) -> float:
        return float(np.mean([value[n] for n in pick]) - np.mean([value[n] for n in names if n not in pick]))

    observed = gap([n for n in names if n[0] == arm])
    gaps = [gap(pick) for pick in itertools.combinations(names, size)]
    wide = sum(abs(g) >= abs(observed) - 1e-12 for g in gaps)
    return wide / len(gaps), wide, len(gaps)


def paired(runs: Mapping[Run, Mapping[str, Any]], x: Run, y: Run) -> str:
    """``x``'s Frechet minus ``y``'s, paired case by case, with its 95 % interval and what it resolves."""
    def row(n: Run) -> dict[str, Any]:
        m = runs[n]
        return {"frechet": m["frechet_3d"], "frechet_se": m["frechet_3d_se"], "jackknife_cases": m["frechet_3d_cases"],
                "frechet_leave_one_out": m["leave_one_out"]}

    d = frechet_difference(row(x), row(y))
    if d is None or not d["paired"]:
        raise ValueError(f"{x} and {y} lack left-out figures over the same cases")
    lo, hi = d["interval"]
    verdict = ("not resolved" if lo <= 0 <= hi else
               f"resolved: {x[0]} seed {x[1]} {'nearer' if hi < 0 else 'farther from'} real")
    return f"- {x[0]} seed {x[1]} - {y[0]} seed {y[1]}: {d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] ({verdict})"


def report(runs: Mapping[Run, Mapping[str, Any]], arm: str, baseline: str,
           tests: Sequence[tuple[str, str, bool]], pairs: Sequence[tuple[Run, Run]]) -> list[str]:
    """The table, ``tests`` ((label, key, log10) permutation tests of ``arm`` against ``baseline``) and ``pairs``."""
    out = table(runs)
    out += ["", "Sources: " + ", ".join(f"{a} seed {s}: {m['record']}" for (a, s), m in runs.items()) + ".", ""]
    n_arm = sum(n[0] == arm for n in runs)
    n_base = sum(n[0] == baseline for n in runs)
    # equal sizes: a split and its complement read the same gap, so the observed one never stands alone
    smallest = (2 if n_arm == n_base else 1) / math.comb(n_arm + n_base, n_arm)
    out += [f"## {arm} against {baseline} (permutation tests over their {n_arm + n_base} runs)", "",
            f"{n_arm} seeds against {n_base} allow a smallest two-sided p of {smallest:.3f}: no single measure "
            "resolves below it.", ""]
    for label, key, log in tests:
        p, wide, total = permutation(runs, arm, baseline, key, log)
        a = ", ".join(f"{runs[n][key]:.3g}" for n in runs if n[0] == arm)
        b = ", ".join(f"{runs[n][key]:.3g}" for n in runs if n[0] == baseline)
        out.append(f"- {label}: {arm} {a} against {b}: p = {p:.3f} ({wide} of {total} splits as wide or wider)")
    out += ["", "## Run against run, paired case by case (Frechet_a - Frechet_b, 95 % interval)", "",
            "The interval covers the draw of cases, not the spread between training runs.", ""]
    out += [paired(runs, x, y) for x, y in pairs]
    return out
