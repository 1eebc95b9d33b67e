"""Summarise this record's two utility readings beside session 63's into read.md.

M: quality_scale's utility phase with eval.utility_match_tumour_free (eval/<run>_utility/report.json: 320 generated
cases, the synthetic set drawn with the real set's 38 tumour-free of 192; segmenter seeds 0 and 1, 20 epochs).
U: unmatched/report.json (the same 320 cases, the plain draw, seed 0, 20 epochs; a second call on the same machine).
A63: ../utility_shipped_h100_20261207's reading A (192 generated, the plain draw, seeds 0 and 1, 20 epochs).
All three read the same 192 real training and 192 held-out cases (eval.subset_seed 0's draw; A63 drew them with
--seeds 0's, the same). Session 63's read.py prints each reading; the table after them sets the all-real
segmenter's trainings at one seed side by side.

Run from this folder: python3 read.py > read.md
"""
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).parent
RUN = "x0_detail100_labels_lll100_skip005_scaleout_seed2_utility"
A63 = HERE.parent / "utility_shipped_h100_20261207" / "eval" / RUN / "report.json"
READINGS = {
    "M: the real set's tumour-free share, 320 generated, seeds 0 1": HERE / "eval" / RUN / "report.json",
    "U: the plain draw from the same 320, seed 0": HERE / "unmatched" / "report.json",
    "A63: session 63's reading A, 192 generated, the plain draw, seeds 0 1": A63,
}


def real_at_one_seed() -> None:
    """The all-real segmenter on the same 192 cases at segmenter seed 0 in each job, then M's seed 1 beside A63's."""
    print("## The all-real segmenter: the same 192 training cases, the same seed, three trainings\n")
    print("| reading | seed | best epoch | best val Dice | test Dice over all cases WT / TC / ET |")
    print("|---|---|---|---|---|")
    for name, path in READINGS.items():
        real = json.loads(path.read_text())["results"]["utility"]["training_sets"]["real"]
        for p in real["per_seed"]:
            t = p["training"]
            dice = " / ".join(f"{p['regions'][r]['dice']:.3f}" for r in ("WT", "TC", "ET"))
            print(f"| {name.split(':')[0]} | {p['seed']} | {t['best_epoch']} | {t['best_val_dice']:.3f} | {dice} |")
    print()


if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("read63", HERE.parent / "utility_shipped_h100_20261207" / "read.py")
    read63 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(read63)
    read63.READINGS = READINGS  # its main() reads its module's READINGS
    read63.main()
    real_at_one_seed()
    for name, path in READINGS.items():
        sets = json.loads(path.read_text())["results"]["utility"]["training_sets"]
        counts = ", ".join(f"{k} {v['cases_without_region']['WT']}" for k, v in sets.items()
                           if v.get("cases_without_region"))
        print(f"- {name.split(':')[0]}: tumour-free training cases (no WT) per set: {counts or 'not recorded (the job ran on a73ea1f, before cases_without_region; its tumour_free.py replays real 38, synthetic 32)'}")
