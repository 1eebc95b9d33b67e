"""Session 55: the shipped recipe's four seeds read with one instrument (the tracked feature net), one manifest
(sha256 9e62357125613229...), the same held-out floor and real draws: seeds 2 and 3 (this job) beside seeds 0 (the
shipped model, regenerated) and 1 (../seedspread_h100_20261206/); python compare.py > compare.md"""
import json
from pathlib import Path

here = Path(__file__).resolve().parent
runs = {}
for rec in (here.parent / "seedspread_h100_20261206", here):
    for run, m in json.loads((rec / "quality_scale.json").read_text())["per_run"].items():
        runs[run.replace("x0_detail100_labels_lll100_skip005_", "")] = m
rows = [("Frechet 3D / floor (192 cases; floor 2.58)", "frechet_over_floor", 2), ("Frechet 3D", "frechet_3d", 2),
        ("Frechet 3D 95 % low", "frechet_3d_low", 2), ("Frechet 3D 95 % high", "frechet_3d_high", 2),
        ("precision", "prdc_precision", 3), ("recall", "prdc_recall", 3), ("coverage", "prdc_coverage", 3),
        ("loss, last 200 steps", "loss_last_200", 5),
        ("evaluate: background RMS outside the brain", "eval_background_rms", 4),
        ("evaluate: outside voxels faintly non-zero", "eval_background_nonzero_fraction", 2),
        *[(f"detail coherence vs real {m} (< 0 grain)", f"coherence_vs_real_{m}", 3) for m in ("t1n", "t1c", "t2w", "t2f")],
        *[(f"spectrum max abs log10 {m}", f"spectrum_max_abs_log10_{m}", 2) for m in ("t1n", "t1c", "t2w", "t2f")],
        *[(f"histogram W1 {m} (image phase's real draw)", f"histogram_w1_{m}", 3) for m in ("t1n", "t1c", "t2w", "t2f")],
        ("tumour share (real 0.802)", "tumour_share", 3), ("tumour sizes' W1 (image phase's real draw)", "tumour_size_w1", 3),
        ("ET - normal brain, t1c, vs real (outside-the-tumour scale)", "et_contrast_vs_real_t1c", 2)]
names = list(runs)
print("| measure | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for label, key, digits in rows:
    print(f"| {label} | " + " | ".join(f"{runs[n][key]:.{digits}f}" if runs[n].get(key) is not None else "n/a"
                                      for n in names) + " |")
