"""The shipped recipe (x0_detail100_labels_lll100_skip005, 4900 steps) over its three seeds: seed 0 from
session 20's lease (../quality_scale_h200_20261202b/, shipped as anatomy-2mm), seeds 1 and 2 from this
one; and the edge weight 3 run against seed 1, the seed it shares. Reads the runs' quality_scale.json
rows and their tissue QC reports; writes three_seeds.json and prints three_seeds.md's tables.

    python three_seeds.py > three_seeds.md      (from this folder; needs only the standard library + medidiff's venv)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/: quality_scale's interval, one definition
from quality_scale import summarise_over_seeds  # noqa: E402

RECIPE = "x0_detail100_labels_lll100_skip005"
SOURCES = {  # seed -> (folder, run name)
    0: (HERE.parent / "quality_scale_h200_20261202b", f"{RECIPE}_seed0"),
    1: (HERE, f"{RECIPE}_seed1"),
    2: (HERE, f"{RECIPE}_seed2"),
}
EDGE = (HERE, f"{RECIPE}_edge3_seed1")
MODS = ("t1n", "t1c", "t2w", "t2f")
ROWS = [  # (key, label, goal)
    *((f"spectrum_max_abs_log10_{m}", f"spectrum max abs log10 {m}", "<= 0.30") for m in MODS),
    *((f"spectrum_top_band_ratio_{m}", f"spectrum top band / real {m}", "0.5-2") for m in MODS),
    ("background_rms", "background RMS outside the head", "<= 0.02"),
    ("eval_background_nonzero_fraction", "outside the brain: faintly non-zero share", "real 0"),
    *((f"histogram_w1_{m}", f"histogram W1 {m}", "") for m in MODS),
    ("tumour_share", "cases with a tumour", "real 0.854"),
    ("tumour_size_w1", "tumour size W1 (log10 WT fraction)", ""),
    ("memorisation_flagged", "memorisation: cases flagged of 16", "0"),
    ("memorisation_max_similarity", "memorisation: max NN similarity", "threshold 0.98"),
    ("fraction_CSF", "CSF fraction", "real 0.064 +- 0.002"),
    ("fraction_GM", "GM fraction", "real 0.597 +- 0.007"),
    ("fraction_WM", "WM fraction", "real 0.339 +- 0.006"),
    ("csf_share_surface", "CSF share of the outer two layers", "real 0.189 +- 0.010"),
    *((f"contrast_error_{m}", f"WM/GM contrast, synthetic / real - 1, {m}", "within +-0.10") for m in MODS[:3]),
    ("fidelity_ratio_WT", "mask fidelity WT (synthetic / real Dice)", ">= 0.85"),
    ("fidelity_ratio_TC", "mask fidelity TC", ">= 0.85"),
]


def scores(folder: Path, run: str) -> dict[str, float]:
    """One run's row from its quality_scale.json, with its tissue QC report's fractions and contrasts."""
    row = dict(json.loads((folder / "quality_scale.json").read_text())["per_run"][run])
    tissue = json.loads((folder / "eval" / f"{run}_tissue" / "report.json").read_text())
    for key, m in tissue["results"]["tissue"]["synthetic_vs_real"]["metrics"].items():
        row[key] = m["synthetic_mean"]
        if key.startswith("wm_gm_contrast_"):
            row["contrast_error_" + key.rsplit("_", 1)[1]] = m["synthetic_mean"] / m["real_mean"] - 1
    return row


def fmt(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def main() -> None:
    seeds = {s: scores(*src) for s, src in SOURCES.items()}
    edge = scores(*EDGE)
    summary = {key: summarise_over_seeds([seeds[s].get(key, float("nan")) for s in SOURCES]) for key, _, _ in ROWS}
    out = {"recipe": RECIPE, "sources": {s: f"{f.name}/{r}" for s, (f, r) in SOURCES.items()},
           "per_seed": {s: {k: seeds[s].get(k) for k, _, _ in ROWS} for s in SOURCES},
           "summary": summary, "edge3_seed1": {k: edge.get(k) for k, _, _ in ROWS},
           "edge3_minus_seed1": {k: edge[k] - seeds[1][k] for k, _, _ in ROWS if k in edge and k in seeds[1]}}
    (HERE / "three_seeds.json").write_text(json.dumps(out, indent=2) + "\n")
    print("| measure | seed 0 | seed 1 | seed 2 | mean [95 % t interval] (n) | edge 3, seed 1 | edge 3 - seed 1 | goal / real |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, label, goal in ROWS:
        s = summary[key]
        interval = f"{fmt(s['mean'])} [{fmt(s['t95'][0])}, {fmt(s['t95'][1])}] ({s['n']})" if s["n"] > 1 else \
            (fmt(s["mean"]) + f" ({s['n']})")
        diff = out["edge3_minus_seed1"].get(key)
        print(f"| {label} | {' | '.join(fmt(seeds[i].get(key)) for i in SOURCES)} | {interval} | "
              f"{fmt(edge.get(key))} | {'n/a' if diff is None else f'{diff:+.3f}'} | {goal} |")


if __name__ == "__main__":
    main()
