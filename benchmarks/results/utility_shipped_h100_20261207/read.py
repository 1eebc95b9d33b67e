"""Summarise the two utility readings of this record into read.md.

Reading A: quality_scale's utility phase, eval/<run>_utility/report.json (20 epochs, segmenter seeds 0 and 1).
Reading B: u30/report.json (the same generated folder, 30 epochs, segmenter seed 2).
medidiff evaluate (at a73ea1f) drew eval.max_real's real subsets from the first segmenter seed (training subset seed
s, held-out subset s + 1), so A and B read different real training and held-out cases (27 / 101 of 192 shared):
B differs from A in epochs, seed and cases at once.

Run from this folder: python3 read.py > read.md
"""
import json
from pathlib import Path

HERE = Path(__file__).parent
READINGS = {
    "A: 20 epochs, seeds 0 1": HERE / "eval" / "x0_detail100_labels_lll100_skip005_scaleout_seed2_utility" / "report.json",
    "B: 30 epochs, seed 2": HERE / "u30" / "report.json",
}
REGIONS = ("WT", "TC", "ET")


def main() -> None:
    for name, path in READINGS.items():
        u = json.loads(path.read_text())["results"]["utility"]
        sets, paired = u["training_sets"], u["paired_vs_real"]
        print(f"## {name} ({u['test_cases']} held-out test cases; paired reference `{u['paired_reference']}`)\n")
        print("Training (per seed): epochs run, why it stopped, best epoch, best validation Dice, "
              "the best validation Dice's gain over its last 5 epochs\n")
        print("| set | seed | epochs | stopped | best epoch | best val Dice | gain in the last 5 epochs |")
        print("|---|---|---|---|---|---|---|")
        for s_name, s in sets.items():
            for p in s["per_seed"]:
                t = p["training"]
                v = t["val_dice"]
                gain = max(v) - max(v[:-5]) if len(v) > 5 else float("nan")
                print(f"| {s_name} | {p['seed']} | {t['epochs']} | {t['stopped']} | {t['best_epoch']} | "
                      f"{t['best_val_dice']:.3f} | {gain:+.3f} |")
        print("\nTest Dice, mean over seeds: on the test cases whose labels hold the region (the goal's reading; "
              "evaluate's by_tumour_presence), then over all test cases (per seed)\n")
        print("| set | " + " | ".join(f"{r} with region" for r in REGIONS) + " | "
              + " | ".join(f"{r} all cases (per seed)" for r in REGIONS) + " |")
        print("|---|" + "---|" * 6)
        for s_name, s in sets.items():
            wr = s["by_tumour_presence"]["with_region"]
            cells = [f"{wr[r]['dice_mean']:.3f} (n={wr[r]['cases']})" for r in REGIONS]
            cells += [" / ".join(f"{p['regions'][r]['dice']:.3f}" for p in s["per_seed"]) for r in REGIONS]
            print(f"| {s_name} | " + " | ".join(cells) + " |")
        print("\nOn the tumour-free test cases (truth without the region) Dice is 1 where the segmenter predicts "
              "none of it and 0 otherwise: the share of those cases with nothing predicted\n")
        print("| set | " + " | ".join(f"{r}: share with none predicted (n)" for r in REGIONS) + " |")
        print("|---|---|---|---|")
        for s_name, s in sets.items():
            wo = s["by_tumour_presence"]["without_region"]
            print(f"| {s_name} | " + " | ".join(f"{wo[r]['dice_mean']:.3f} ({wo[r]['cases']})" for r in REGIONS) + " |")
        ref = sets[u["paired_reference"]]["by_tumour_presence"]["with_region"]
        print("\nGoals on the test cases with the region. Synthetic / real at equal N: the ratio of means, and "
              "in brackets the paired difference's 95 % interval (over test cases and seeds) divided by real's "
              "mean added to 1 (real's mean held fixed: an approximation of the ratio's interval). "
              "Real + synthetic - real: the paired difference and its interval.\n")
        print("| region | synthetic / real (goal >= 0.9) | real + synthetic - real (goal >= 0) |")
        print("|---|---|---|")
        for r in REGIONS:
            d = paired["synthetic - real"][r]["dice_with_region"]
            real = ref[r]["dice_mean"]
            syn = sets["synthetic"]["by_tumour_presence"]["with_region"][r]["dice_mean"]
            lo, hi = (1 + x / real for x in d["ci95"])
            g = paired["real+synthetic - real"][r]["dice_with_region"]
            print(f"| {r} | {syn / real:.3f} [{lo:.3f}, {hi:.3f}] | {g['mean']:+.4f} "
                  f"[{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}] |")
        print()


if __name__ == "__main__":
    main()
