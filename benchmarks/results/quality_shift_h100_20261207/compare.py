"""Session 61: the time shift's factor halved (objective.shift_base_voxels=131072: 1.53 -> 0.77 on the 40x48x40
latent) on the outside-the-tumour scale, two seeds (this job), beside the scale's seeds 0-1 at the shipped factor
(../quality_scaleout_h100_20261206/) and img004's two (../quality_skip004_h100_20261207/), all at 4901 steps, 192
cases (case seeds 0..191) under Heun 30.

This job's image phase (Frechet, PRDC, and its realism against every training-fold case) did not finish: its runs
have only the realism phase's reading (192 real training cases, the floor 192 held-out ones). A record's per_run
rows take the image phase's realism where it finished, so they are NOT comparable with this job's; here every run is
read from its own realism phase's reports (realism/, realism_outside_tumour/, seeds/), which all three jobs wrote
against the same real cases (checked: the same real tumour share and counts). The scale's seeds 2-3 ran no realism
phase and are left out. Two seeds against two allow no permutation p below 0.333: the table is read row by row.
python compare.py > compare.md (from any folder)"""
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parents[2]), str(here.parents[1])]
import arm_compare as ac  # noqa: E402  (benchmarks/arm_compare.py)
import quality_scale as qs  # noqa: E402

SCALE = "x0_detail100_labels_lll100_skip005_scaleout_seed{}"
IMG004 = "x0_detail100_labels_lll100_skip005_img004_scaleout_seed{}"
SHIFT = "x0_detail100_labels_lll100_skip005_scaleout_shift_seed{}"
RECORDS = {("shift 1.53", 0): ("quality_scaleout_h100_20261206", SCALE),
           ("shift 1.53", 1): ("quality_scaleout_h100_20261206", SCALE),
           ("img004", 0): ("quality_skip004_h100_20261207", IMG004), ("img004", 1): ("quality_skip004_h100_20261207", IMG004),
           ("shift 0.77", 0): (here.name, SHIFT), ("shift 0.77", 1): (here.name, SHIFT)}


runs, bands = ac.load_realism_phase_runs(here.parent, RECORDS)  # refuses realism phases of different real sides
real = next(iter(qs.phase_reports(here, SHIFT.format(0))["realism"]["results"].values()))
print(f"<!-- one real side for every run's realism phase: real tumour share "
      f"{real['checks']['tumour_statistics']['share_with_tumour']['real']:.4f}, counts {json.dumps(real['counts'])} -->")
MODS = ac.MODS
print("## Spectrum per band, log10 synthetic / real (bands 1-8, low to high; goal |x| <= 0.30; realism phase)\n")
print("| run | " + " | ".join(MODS) + " |\n|---|" + "---|" * len(MODS))
for n, b in bands.items():
    print(f"| {n[0]} seed {n[1]} | " + " | ".join(" ".join(f"{v:+.2f}" for v in b[m]) for m in MODS) + " |")
print("\n## Every run, from its realism phase (no Frechet: the shift job's image phase was cut)\n")
rows = [r for r in ac.ROWS if not r[1].startswith(("frechet", "prdc"))]
for line in ac.table(runs, rows):
    print(line)
print("\nSources: " + ", ".join(f"{a} seed {s}: {m['record']}" for (a, s), m in runs.items()) + ".")
print("\n## shift 0.77 against shift 1.53 (two seeds each: the smallest two-sided p is 0.333; listed for the record)\n")
for label, key in ((f"band {b + 1} {m}", (b, m)) for b in (3, 4, 7) for m in MODS):
    for n in runs:
        runs[n][f"band{key[0] + 1}_{key[1]}"] = bands[n][key[1]][key[0]]
    p, wide, total = ac.permutation(runs, "shift 0.77", "shift 1.53", f"band{key[0] + 1}_{key[1]}")
    a = ", ".join(f"{runs[n][f'band{key[0] + 1}_{key[1]}']:+.2f}" for n in runs if n[0] == "shift 0.77")
    b = ", ".join(f"{runs[n][f'band{key[0] + 1}_{key[1]}']:+.2f}" for n in runs if n[0] == "shift 1.53")
    print(f"- {label}: {a} against {b}: p = {p:.3f} ({wide} of {total})")
