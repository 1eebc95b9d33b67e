"""Session 57: the outside-the-tumour scale's four seeds beside the shipped recipe's four, all at 4901 steps, 192
cases under Heun 30, one instrument (the tracked feature net, manifest sha256 9e62357125613229..., the same floor
2.58 and image-phase real draw): scaleout seeds 0-1 (../quality_scaleout_h100_20261206/) and 2-3 (this job);
shipped-recipe seeds 0 (the shipped bf16 file) and 1 (../seedspread_h100_20261206/), 2-3
(../seedpick4_h100_20261207/). The eight-run table is the image phase's (this job ran no realism phase); the last
table is the realism phase's, for the scale's seeds 0-1 and seed 2's bf16 export (cpu_seed2_bf16/). Seeds are
independent training runs; the recipe comparison is a permutation test over the eight runs' Frechet figures (70
ways to split eight runs four and four), the run-level differences paired case by case where both sets share case
seeds 0..191 (image_metrics.frechet_difference). python compare.py > compare.md (from any folder)"""
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parents[2] / "benchmarks"), str(here.parents[2])]
from quality_scale import NORMAL_BRAIN_REALISM, eval_metrics  # noqa: E402

from medidiff.eval.image_metrics import frechet_difference  # noqa: E402

SHIPPED, SCALE = "x0_detail100_labels_lll100_skip005_seed{}", "x0_detail100_labels_lll100_skip005_scaleout_seed{}"
RECORDS = {("shipped recipe", 0): ("seedspread_h100_20261206", SHIPPED), ("shipped recipe", 1): ("seedspread_h100_20261206", SHIPPED),
           ("shipped recipe", 2): ("seedpick4_h100_20261207", SHIPPED), ("shipped recipe", 3): ("seedpick4_h100_20261207", SHIPPED),
           ("scaleout", 0): ("quality_scaleout_h100_20261206", SCALE), ("scaleout", 1): ("quality_scaleout_h100_20261206", SCALE),
           ("scaleout", 2): (here.name, SCALE), ("scaleout", 3): (here.name, SCALE)}


def load(recipe: str, seed: int) -> dict:
    folder, pattern = RECORDS[(recipe, seed)]
    rec = json.loads((here.parent / folder / "quality_scale.json").read_text())
    run = pattern.format(seed)
    return {**rec["per_run"][run], "leave_one_out": rec["frechet_leave_one_out"][run], "record": folder}


runs = {key: load(*key) for key in RECORDS}
floors = [m["frechet_3d_floor"] for m in runs.values()]
assert max(floors) - min(floors) < 1e-5 * min(floors), "one floor for every run (the jobs agree to 2e-7)"
assert all(m["frechet_3d_cases"] == 192 for m in runs.values())
MODS = ("t1n", "t1c", "t2w", "t2f")
rows = [("Frechet 3D / floor (goal <= 3)", "frechet_over_floor", 2), ("Frechet 3D", "frechet_3d", 2),
        ("  95 % jackknife low", "frechet_3d_low", 2), ("  95 % jackknife high", "frechet_3d_high", 2),
        ("precision", "prdc_precision", 3), ("recall", "prdc_recall", 3), ("density", "prdc_density", 3),
        ("coverage", "prdc_coverage", 3),
        ("loss, last 200 steps (each recipe's own scale: not comparable across them)", "loss_last_200", 5),
        ("background RMS outside the brain (evaluate's)", "eval_background_rms", 4),
        *[(f"detail coherence vs real {m} (< 0 grain, > 0 blur)", f"coherence_vs_real_{m}", 3) for m in MODS],
        *[(f"spectrum max abs log10 {m} (goal <= 0.30)", f"spectrum_max_abs_log10_{m}", 2) for m in MODS],
        *[(f"histogram W1 {m} (floor {runs[('scaleout', 2)][f'histogram_w1_floor_{m}']:.3f})", f"histogram_w1_{m}", 3)
          for m in MODS],
        *[(f"spread of {m} levels over real's", f"spread_level_{m}", 2) for m in MODS],
        ("tumour share (real 0.802)", "tumour_share", 3), ("tumour sizes' W1", "tumour_size_w1", 3),
        ("tumour sizes pass (1)", "tumour_size_pass", 0),
        ("share with two or more tumours (real 0.000)", "tumour_several_share", 3),
        ("  that share passes (1)", "tumour_several_pass", 0), ("tumour contrast passes (1)", "tumour_contrast_pass", 0),
        ("brain sizes' W1", "brain_size_w1", 3)]
names = list(runs)
print("| measure | " + " | ".join(f"{r} {s}" for r, s in names) + " |")
print("|---|" + "---|" * len(names))
for label, key, digits in rows:
    print(f"| {label} | " + " | ".join("n/a" if runs[n].get(key) is None else f"{float(runs[n][key]):.{digits}f}"
                                      for n in names) + " |")
print("\nSources: " + ", ".join(f"{r} {s}: {m['record']}" for (r, s), m in runs.items()) +
      ". The shipped recipe's seed 0 is the shipped bf16 file; every other run is its job's model as trained.")

# the recipe comparison: eight runs, four a recipe; how often would a random split into two fours put a gap in
# mean log10(Frechet / floor) as wide as the recipes' (two-sided)
logs = {n: math.log10(runs[n]["frechet_over_floor"]) for n in names}
a = [logs[n] for n in names if n[0] == "scaleout"]
b = [logs[n] for n in names if n[0] == "shipped recipe"]
gap = float(np.mean(a) - np.mean(b))
values = list(logs.values())
gaps = [float(np.mean([values[i] for i in pick]) - np.mean([values[i] for i in range(8) if i not in pick]))
        for pick in itertools.combinations(range(8), 4)]
p = sum(abs(g) >= abs(gap) - 1e-12 for g in gaps) / len(gaps)
ordered = sorted(names, key=lambda n: runs[n]["frechet_over_floor"])
print("\n## The two recipes, four seeds each\n")
print("- Frechet / floor, lowest first: " + ", ".join(f"{runs[n]['frechet_over_floor']:.2f} ({'scaleout' if n[0] == 'scaleout' else 'shipped'} {n[1]})"
                                                    for n in ordered))
ratio = {r: [runs[n]["frechet_over_floor"] for n in names if n[0] == r] for r in ("scaleout", "shipped recipe")}
print(f"- medians (the middle two's mean): scaleout {np.median(ratio['scaleout']):.2f}x, shipped recipe "
      f"{np.median(ratio['shipped recipe']):.2f}x; geometric means {10 ** np.mean(a):.2f}x and {10 ** np.mean(b):.2f}x "
      f"(ratio {10 ** gap:.2f})")
print(f"- permutation test on mean log10(Frechet / floor), all 70 splits of the eight runs: two-sided p = {p:.3f} "
      f"({sum(abs(g) >= abs(gap) - 1e-12 for g in gaps)} of 70 splits as wide or wider; the smallest p four a side allows is 2/70 = 0.029)")
print("\n## Run against run, paired case by case (the same case seeds 0..191; Frechet_a - Frechet_b, 95 % interval)\n")
pairs = [(("scaleout", 2), ("shipped recipe", 0)), (("scaleout", 0), ("shipped recipe", 0)),
         (("scaleout", 2), ("scaleout", 0)), (("scaleout", 3), ("scaleout", 2))]
print("The paired interval leaves case i out of both sets; the unpaired one treats the two as independent draws")
print("(+-1.96 sqrt(se_a^2 + se_b^2)). Where the left-out figures correlate negatively, pairing widens the interval.")
print("Both cover the draw of cases only, not the spread between training runs; pairs of best seeds were chosen")
print("after reading the figures.\n")


def row(n: tuple) -> dict:
    return {"frechet": runs[n]["frechet_3d"], "frechet_se": runs[n]["frechet_3d_se"],
            "jackknife_cases": runs[n]["frechet_3d_cases"], "frechet_leave_one_out": runs[n]["leave_one_out"]}


for x, y in pairs:
    d = frechet_difference(row(x), row(y))
    u = frechet_difference(*({k: v for k, v in row(n).items() if k != "frechet_leave_one_out"} for n in (x, y)))
    lo, hi = d["interval"]
    verdict = "not resolved" if lo <= 0 <= hi else ("resolved: a nearer real" if hi < 0 else "resolved: a farther")
    corr = float(np.corrcoef(runs[x]["leave_one_out"], runs[y]["leave_one_out"])[0, 1])
    print(f"- {x[0]} {x[1]} - {y[0]} {y[1]}: {d['difference']:+.2f} paired [{lo:+.2f}, {hi:+.2f}] ({verdict}), "
          f"unpaired [{u['interval'][0]:+.2f}, {u['interval'][1]:+.2f}]; left-out figures correlate {corr:+.2f}")

# the case order: each job's sets hold case seed i at row i (generate names cases by index from --seed 0), so
# same-seed cases of two models should lie nearer each other than other pairs where the noise carries the case
# (features z-scored by the real training cases' mean and sd; the kept features of each job's image phase)
FEATURES = {("shipped recipe", 0): "seedspread_h100_20261206", ("scaleout", 2): here.name, ("scaleout", 3): here.name}
real = np.load(here / "eval" / "real_features.npz")["train"]
mu, sd = real.mean(0), real.std(0) + 1e-6
z = {n: (np.load(here.parent / f / "eval" / RECORDS[n][1].format(n[1]) / "features.npz")["synthetic"] - mu) / sd
     for n, f in FEATURES.items()}
print("\nCase order (same-seed cases' feature distance over other pairs' median, 1 = no link):")
for x, y in ((("scaleout", 2), ("scaleout", 3)), (("scaleout", 2), ("shipped recipe", 0))):
    dist = np.linalg.norm(z[x][:, None, :] - z[y][None, :, :], axis=2)
    print(f"- {x[0]} {x[1]} / {y[0]} {y[1]}: {np.median(np.diag(dist)) / np.median(dist[~np.eye(len(dist), dtype=bool)]):.2f}")

# the realism phase's checks (192 real training and held-out cases a side, the first of the manifest's: the same draw
# in every job): the scale's seeds 0-1 (session 53, 192 cases each, fp32) beside seed 2's bf16 export (64 CPU cases,
# cpu_seed2_bf16/; fewer cases: W1 and spread figures are noisier, not comparable as verdicts)
bf16 = here / "cpu_seed2_bf16"
if (bf16 / NORMAL_BRAIN_REALISM / f"{SCALE.format(2)}.json").exists():
    def realism_rows(folder: Path, run: str) -> dict:
        first = json.loads((folder / "realism" / f"{run}.json").read_text())
        second = json.loads((folder / NORMAL_BRAIN_REALISM / f"{run}.json").read_text())
        return eval_metrics(first, {"results": {NORMAL_BRAIN_REALISM: second["results"]["realism"]}})

    s53 = here.parent / "quality_scaleout_h100_20261206"
    sets = {"scaleout 0 (192, fp32)": realism_rows(s53, SCALE.format(0)),
            "scaleout 1 (192, fp32)": realism_rows(s53, SCALE.format(1)),
            "scaleout 2 (64, bf16, CPU)": realism_rows(bf16, SCALE.format(2))}
    keys = [*(f"coherence_vs_real_{m}" for m in MODS), *(f"spectrum_max_abs_log10_{m}" for m in MODS),
            *(f"histogram_w1_{m}" for m in MODS), *(f"histogram_w1_outside_tumour_{m}" for m in MODS),
            "eval_background_rms", "tumour_share", "tumour_share_real", "tumour_size_w1", "tumour_size_pass",
            "tumour_several_share", "spread_all", *(f"et_contrast_vs_real_{m}" for m in ("t1c", "t2f"))]
    print("\n## The realism phase: the scale's seeds 0-1 beside seed 2's bf16 export\n")
    print("| measure | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for key in keys:
        print(f"| {key} | " + " | ".join("n/a" if v.get(key) is None else f"{float(v[key]):.3f}" for v in sets.values()) + " |")
