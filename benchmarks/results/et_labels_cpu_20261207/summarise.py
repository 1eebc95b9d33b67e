"""Session 60 (a copy of utility_shipped_cpu_20261207's, run on utility_matched/): train-on-synthetic for the shipped
model's 64 CPU cases with t1c's ET and edema matched to the training fold's level (match_t1c.py); session 59's text:
train-on-synthetic for the shipped model (anatomy-2mm, the outside-the-tumour scale's seed 2, its bf16
export) on its 64 CPU cases (case seeds 0..63, Heun 30), 64 real training and 64 held-out cases (evaluate's seeded
subsets, eval.max_real=64), one segmenter seed, at most 10 epochs (quality_scale's utility budget). Reads
utility/report.json (medidiff evaluate --tasks utility): each training set's Dice on the test cases whose labels
hold the region (issue 16's goal reading) and over all cases, the synthetic / real ratio at equal N, the paired
differences with evaluate's bootstrap intervals (over test cases; one seed), and each segmenter's validation Dice by
epoch (whether 10 epochs reached a plateau). python summarise.py [report.json] > summary.md"""
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
path = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "utility" / "report.json"
rep = json.loads(path.read_text())
u = rep["results"]["utility"]
sets = u["training_sets"]
REGIONS = ("WT", "TC", "ET")
print(f"test set: {u['test_set']}, {u['test_cases']} cases; budget {u['budget']}; paired reference: {u['paired_reference']}\n")
print("| training set | cases | " + " | ".join(f"Dice {r} (with {r})" for r in REGIONS) + " | "
      + " | ".join(f"Dice {r} (all)" for r in REGIONS) + " | test cases with WT / TC / ET |")
print("|---|---|" + "---|" * 7)
for name, s in sets.items():
    w = s["by_tumour_presence"]["with_region"]
    print(f"| {name} | {s['train_cases']} | " + " | ".join(f"{w[r]['dice_mean']:.3f}" for r in REGIONS) + " | "
          + " | ".join(f"{s['aggregate'][r]['dice_mean']:.3f}" for r in REGIONS) + " | "
          + " / ".join(str(w[r].get("cases", "?")) for r in REGIONS) + " |")
ref = sets[u["paired_reference"]]
print("\nsynthetic / real at equal N (goal >= 0.9), on the test cases with the region: " + ", ".join(
    f"{r} {sets['synthetic']['by_tumour_presence']['with_region'][r]['dice_mean'] / ref['by_tumour_presence']['with_region'][r]['dice_mean']:.2f}"
    for r in REGIONS))
print("\n## Paired differences (Dice, test cases with the region; 95 % bootstrap over test cases, one seed)\n")
for pair, by_region in u["paired_vs_real"].items():
    parts = []
    for r in REGIONS:
        d = by_region[r]["dice_with_region"]
        if d is None:
            parts.append(f"{r} n/a")
            continue
        lo, hi = d.get("ci95", d.get("interval", [float("nan")] * 2))
        parts.append(f"{r} {d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] ({d['cases']} cases)")
    print(f"- {pair}: " + "; ".join(parts))
print("\n## Validation Dice by epoch (each set's held-back fifth; the plateau stop needs 15 epochs without a gain)\n")
for name, s in sets.items():
    t = s["per_seed"][0]["training"]
    print(f"- {name}: {' '.join(f'{v:.2f}' for v in t['val_dice'])} (best epoch {t['best_epoch']}, stopped: {t['stopped']}, "
          f"{t['train_cases']} train / {t['val_cases']} val cases)")
