"""Session 62: img004's skips (the images' EDM skip at 0.04) with the time shift's factor halved
(objective.shift_base_voxels=131072: 1.53 -> 0.77 on the 40x48x40 latent) on the outside-the-tumour scale, one seed
(this job: device refusals left time for one), beside the scale's four seeds (../quality_scaleout_h100_20261206/,
../quality_scaleout_seeds23_h100_20261207/), img004's two (../quality_skip004_h100_20261207/) and, on the realism
phase's real side, the shift arm's two (../quality_shift_h100_20261207/, whose image phase was cut). All at 4901
steps, 192 cases (case seeds 0..191) under Heun 30.

Part 1 reads each record's per_run rows (the image phase's: Frechet and PRDC against every training-fold case, its
realism against them); one instrument is checked (one floor, 192 cases, the real features bitwise the scale's).
One seed: no permutation test; the arm's rank among the runs and its Frechet paired case by case against the
same-seed runs. Part 2 reads every run from its realism phase (192 real training cases): the shift arm has no
other reading. This job's realism phase wrote realism/<run>.json but not its outside-the-tumour reading (the
budget ran out), so its outside-the-tumour rows are n/a. python compare.py > compare.md (from any folder)"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parents[2]), str(here.parents[1])]
import arm_compare as ac  # noqa: E402  (benchmarks/arm_compare.py)

SCALE = "x0_detail100_labels_lll100_skip005_scaleout_seed{}"
IMG004 = "x0_detail100_labels_lll100_skip005_img004_scaleout_seed{}"
SHIFT = "x0_detail100_labels_lll100_skip005_scaleout_shift_seed{}"
BOTH = "x0_detail100_labels_lll100_skip005_img004_scaleout_shift_seed{}"
IMAGE = {**{("scale", s): ("quality_scaleout_h100_20261206", SCALE) for s in (0, 1)},
         **{("scale", s): ("quality_scaleout_seeds23_h100_20261207", SCALE) for s in (2, 3)},
         **{("img004", s): ("quality_skip004_h100_20261207", IMG004) for s in (0, 1)},
         ("img004 + shift 0.77", 0): (here.name, BOTH)}
REALISM = {**{("scale", s): ("quality_scaleout_h100_20261206", SCALE) for s in (0, 1)},
           **{("img004", s): ("quality_skip004_h100_20261207", IMG004) for s in (0, 1)},
           **{("shift 0.77", s): ("quality_shift_h100_20261207", SHIFT) for s in (0, 1)},
           ("img004 + shift 0.77", 0): (here.name, BOTH)}
ARM = ("img004 + shift 0.77", 0)

runs = ac.load_runs(here.parent, IMAGE)
print(ac.check_one_instrument(runs, here / "eval" / "real_features.npz",
                              here.parent / "quality_scaleout_seeds23_h100_20261207" / "eval" / "real_features.npz", 192))
print("## Part 1: every run's image phase (Frechet against every training-fold case; realism rows against them)\n")
for line in ac.table(runs):
    print(line)
print("\nSources: " + ", ".join(f"{a} seed {s}: {m['record']}" for (a, s), m in runs.items()) + ".")
print("\n### Where the arm's one seed falls among the six runs of the scale and img004 (rank 1: the lowest)\n")
for label, key in (("Frechet / floor", "frechet_over_floor"), ("precision", "prdc_precision"),
                   ("recall", "prdc_recall"), ("histogram W1 t1c", "histogram_w1_t1c"),
                   ("tumour sizes' W1", "tumour_size_w1"), ("tumour share", "tumour_share"),
                   *[(f"detail coherence {m}", f"coherence_vs_real_{m}") for m in ac.MODS],
                   *[(f"spectrum max abs log10 {m}", f"spectrum_max_abs_log10_{m}") for m in ac.MODS]):
    others = sorted(float(m[key]) for n, m in runs.items() if n != ARM)
    value = float(runs[ARM][key])
    rank = 1 + sum(v < value for v in others)
    print(f"- {label}: {value:.3g}, rank {rank} of {len(others) + 1} (the others {others[0]:.3g} .. {others[-1]:.3g})")
print("\n### Frechet paired case by case (Frechet_a - Frechet_b, 95 % interval over the cases, not over training runs)\n")
for other in (("scale", 0), ("img004", 0), ("scale", 2)):
    print(ac.paired(runs, ARM, other))

realism, bands = ac.load_realism_phase_runs(here.parent, REALISM)  # refuses realism phases of different real sides
print("\n## Part 2: every run from its realism phase (192 real training cases; the shift arm's only reading)\n")
print("Spectrum per band, log10 synthetic / real (bands 1-8, low to high; goal |x| <= 0.30):\n")
print("| run | " + " | ".join(ac.MODS) + " |\n|---|" + "---|" * len(ac.MODS))
for n, b in bands.items():
    print(f"| {n[0]} seed {n[1]} | " + " | ".join(" ".join(f"{v:+.2f}" for v in b[m]) for m in ac.MODS) + " |")
print()
for line in ac.table(realism, [r for r in ac.ROWS if not r[1].startswith(("frechet", "prdc"))]):
    print(line)
print("\nSources: " + ", ".join(f"{a} seed {s}: {m['record']}" for (a, s), m in realism.items()) + ".")
