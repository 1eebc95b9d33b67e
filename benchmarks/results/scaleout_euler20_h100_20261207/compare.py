"""Session 56: the scaleout recipe's two seeds under Euler 20 against their own Heun 30 (session 53's reading,
../quality_scaleout_h100_20261206/, the fp32 models in that job), on the same 192 case seeds (0..191), one
instrument (the tracked feature net, session 53's manifest sha256 9e62357125613229..., the same floor, the realism
phase's 192 real a side): seed 1 under Euler 20 on the H100 (this job, the bf16 export), seed 0 under Euler 20 on the
CPU (cpu_seed0/, read_cpu.py). Realism rows from the realism phase's files on both scales (quality_scale.eval_metrics,
the same real draw for every set); Frechet differences with case i left out of both sets
(image_metrics.frechet_difference). python compare.py > compare.md (from any folder)"""
import json
import sys
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parents[2] / "benchmarks"), str(here.parents[2])]
from quality_scale import NORMAL_BRAIN_REALISM, eval_metrics  # noqa: E402

from medidiff.eval.image_metrics import frechet_difference  # noqa: E402

RUN = "x0_detail100_labels_lll100_skip005_scaleout_seed{}"
s53 = here.parent / "quality_scaleout_h100_20261206"


def realism_rows(folder: Path, run: str) -> dict:
    """eval_metrics of the realism phase's two readings (shipped scale, outside-the-tumour scale)."""
    first = json.loads((folder / "realism" / f"{run}.json").read_text())
    second = json.loads((folder / NORMAL_BRAIN_REALISM / f"{run}.json").read_text())
    return eval_metrics(first, {"results": {NORMAL_BRAIN_REALISM: second["results"]["realism"]}})


def job_frechet(folder: Path, run: str) -> dict:
    rec = json.loads((folder / "quality_scale.json").read_text())
    m = rec["per_run"][run]
    return {"frechet": m["frechet_3d"], "frechet_se": m["frechet_3d_se"], "jackknife_cases": m["frechet_3d_cases"],
            "frechet_leave_one_out": rec["frechet_leave_one_out"][run], "floor": m["frechet_3d_floor"],
            "precision": m["prdc_precision"], "recall": m["prdc_recall"], "coverage": m["prdc_coverage"]}


def cpu_frechet(folder: Path) -> dict:
    img = json.loads((folder / "image.json").read_text())
    return {"frechet": img["frechet_3d"], "frechet_se": img["frechet_se"], "jackknife_cases": img["cases"],
            "frechet_leave_one_out": img["frechet_leave_one_out"], "floor": img["floor"],
            "precision": img["prdc"]["precision"], "recall": img["prdc"]["recall"], "coverage": img["prdc"]["coverage"]}


sets = {"seed 0, Heun 30 (s53, H100)": (s53, RUN.format(0), job_frechet(s53, RUN.format(0)))}
if (here / "cpu_seed0" / "image.json").exists():
    sets["seed 0, Euler 20 (CPU)"] = (here / "cpu_seed0", RUN.format(0), cpu_frechet(here / "cpu_seed0"))
sets["seed 1, Heun 30 (s53, H100)"] = (s53, RUN.format(1), job_frechet(s53, RUN.format(1)))
sets["seed 1, Euler 20 (H100)"] = (here, RUN.format(1), job_frechet(here, RUN.format(1)))
metrics = {name: realism_rows(folder, run) for name, (folder, run, _) in sets.items()}
MODS = ("t1n", "t1c", "t2w", "t2f")
rows = [("Frechet 3D / floor (192 cases; goal <= 3)", lambda n: sets[n][2]["frechet"] / sets[n][2]["floor"], 2),
        ("Frechet 3D", lambda n: sets[n][2]["frechet"], 2),
        *[(k, (lambda key: lambda n: sets[n][2][key])(k), 3) for k in ("precision", "recall", "coverage")],
        ("background RMS outside the brain (evaluate's)", "eval_background_rms", 4),
        *[(f"detail coherence vs real {m} (< 0 grain; goal within floor + 0.03)", f"coherence_vs_real_{m}", 3) for m in MODS],
        *[(f"spectrum max abs log10 {m} (goal <= 0.30)", f"spectrum_max_abs_log10_{m}", 2) for m in MODS],
        *[(f"spectrum top band ratio {m} (goal 0.5-2)", f"spectrum_top_band_ratio_{m}", 2) for m in MODS],
        *[(f"histogram W1 {m}, shipped scale", f"histogram_w1_{m}", 3) for m in MODS],
        *[(f"histogram W1 {m}, outside-the-tumour scale", f"histogram_w1_outside_tumour_{m}", 3) for m in MODS],
        ("tumour share (real: next row)", "tumour_share", 3), ("tumour share, real", "tumour_share_real", 3),
        ("tumour sizes' W1 (pass 1 / fail 0 next row)", "tumour_size_w1", 3), ("tumour sizes pass", "tumour_size_pass", 0),
        ("share with two or more tumours", "tumour_several_share", 3),
        ("spread across cases: robust sd over real's, the properties' geometric mean", "spread_all", 2),
        ("spread across cases: brain size", "spread_brain_size", 2),
        *[(f"ET - normal brain {m}, vs real, outside-the-tumour scale", f"et_contrast_vs_real_{m}", 2) for m in ("t1c", "t2f")]]
names = list(sets)
print("The realism rows: the realism phase's files (192 real a side, the same draw in both jobs). s53: session 53's")
print("job, the models in fp32 as trained; this session's: the bf16 exports (seed 1 on the H100, seed 0 on the CPU).")
print()
print("| measure | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for label, key, digits in rows:
    cells = []
    for n in names:
        v = key(n) if callable(key) else metrics[n].get(key)
        cells.append("n/a" if v is None else f"{float(v):.{digits}f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("Frechet 3D, a - b, 95 % jackknife interval over the 192 cases (case i left out of both):")
print()
for a, b in [("seed 1, Euler 20 (H100)", "seed 1, Heun 30 (s53, H100)"), ("seed 0, Euler 20 (CPU)", "seed 0, Heun 30 (s53, H100)"),
             ("seed 1, Heun 30 (s53, H100)", "seed 0, Heun 30 (s53, H100)"), ("seed 1, Euler 20 (H100)", "seed 0, Euler 20 (CPU)")]:
    if a in sets and b in sets:
        d = frechet_difference(sets[a][2], sets[b][2])
        lo, hi = d["interval"]
        verdict = "not resolved" if lo <= 0 <= hi else ("resolved, a higher" if lo > 0 else "resolved, a lower")
        print(f"- {a} - {b}: {d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] ({verdict}; "
              + ("paired" if d["paired"] else "as independent draws") + ")")

print()
# Does case i of one set answer case i of another? The seed-0 set was generated on the CPU, seed 1's on the H100:
# same-seed cases of two models lie nearer than other pairs where the noise carries the case (z-scored features,
# the real training cases' mean and sd)
cpu = here / "cpu_seed0" / "features.npz"
if cpu.exists():
    real = np.load(here / "eval" / "real_features.npz")["train"]
    mu, sd = real.mean(0), real.std(0) + 1e-6
    za = (np.load(cpu)["synthetic"] - mu) / sd
    zb = (np.load(here / "eval" / RUN.format(1) / "features.npz")["synthetic"] - mu) / sd
    dist = np.linalg.norm(za[:, None, :] - zb[None, :, :], axis=2)
    own, other = np.diag(dist), dist[~np.eye(len(dist), dtype=bool)]
    rank = (dist < own[:, None]).sum(1)  # other seed-1 cases nearer to seed-0 case i than its own
    blocks = [float(np.median(rank[s:s + 12])) for s in range(0, len(rank), 12)]
    print("Case order, seed 0 Euler 20 (CPU) against seed 1 Euler 20 (H100), case i with case i: the median distance "
          f"{np.median(own) / np.median(other):.2f} of other pairs' (means {own.mean() / other.mean():.2f}); other cases "
          f"nearer than its own, median {np.median(rank):.0f} of {len(rank) - 1}; by blocks of 12 cases (the first block: "
          f"session 55's cases 0-11): " + " ".join(f"{b:.0f}" for b in blocks))
