"""Session 61: the time shift's factor halved (objective.shift_base_voxels=131072: 1.53 -> 0.77 on the 40x48x40
latent) on the outside-the-tumour scale, two seeds (this job), beside the scale's four seeds at the shipped factor
(seeds 0-1 ../quality_scaleout_h100_20261206/, 2-3 ../quality_scaleout_seeds23_h100_20261207/) and img004's two
(../quality_skip004_h100_20261207/), all at 4901 steps, 192 cases (case seeds 0..191) under Heun 30 on the same 192
real training cases. This job's image phase (Frechet, PRDC) did not finish before the device time ran out: the
realism phases only; the table's Frechet rows read n/a for the arm. The real side of the image phase (built before
it stopped) is checked bitwise against session 57's, so the arm's cases came from the same manifest and seeds.
Seeds are independent training runs: the arm is tested against the scale's four by permutation over the six runs.
python compare.py > compare.md (from any folder)"""
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parents[2]), str(here.parents[1])]
import arm_compare as ac  # noqa: E402  (benchmarks/arm_compare.py)

SCALE = "x0_detail100_labels_lll100_skip005_scaleout_seed{}"
IMG004 = "x0_detail100_labels_lll100_skip005_img004_scaleout_seed{}"
SHIFT = "x0_detail100_labels_lll100_skip005_scaleout_shift_seed{}"
RECORDS = {("skip 0.05", 0): ("quality_scaleout_h100_20261206", SCALE),
           ("skip 0.05", 1): ("quality_scaleout_h100_20261206", SCALE),
           ("skip 0.05", 2): ("quality_scaleout_seeds23_h100_20261207", SCALE),
           ("skip 0.05", 3): ("quality_scaleout_seeds23_h100_20261207", SCALE),
           ("img004", 0): ("quality_skip004_h100_20261207", IMG004),
           ("img004", 1): ("quality_skip004_h100_20261207", IMG004),
           ("shift", 0): (here.name, SHIFT), ("shift", 1): (here.name, SHIFT)}
runs = ac.load_runs(here.parent, RECORDS)
with_image = {k: v for k, v in runs.items() if "frechet_3d" in v}
print(ac.check_one_instrument(with_image, here / "eval" / "real_features.npz",
                              here.parent / "quality_scaleout_seeds23_h100_20261207" / "eval" / "real_features.npz", 192))
for key, m in runs.items():  # the realism phases: one set of real training cases for every run
    rec = json.loads((here.parent / m["record"] / "quality_scale.json").read_text())
    assert rec["realism_cases"] == 192 and rec["generate"] == 192, (key, rec["realism_cases"], rec["generate"])
MODS = ac.MODS
BANDS = {}
for (arm, seed), (folder, pattern) in RECORDS.items():
    rec = json.loads((here.parent / folder / "quality_scale.json").read_text())
    BANDS[(arm, seed)] = rec["spectrum_log10_ratio_per_band"][pattern.format(seed)]

print("## Spectrum per band, log10 synthetic / real (bands 1-8, low to high; goal |x| <= 0.30)\n")
print("| run | " + " | ".join(MODS) + " |\n|---|" + "---|" * len(MODS))
for n, b in BANDS.items():
    print(f"| {n[0]} seed {n[1]} | " + " | ".join(" ".join(f"{v:+.2f}" for v in b[m]) for m in MODS) + " |")
for band in (3, 4, 7):
    key = f"band{band + 1}"
    for n, b in BANDS.items():
        for m in MODS:
            runs[n][f"{key}_{m}"] = b[m][band]
TESTS = (*((f"band 4 {m}", f"band4_{m}", False) for m in MODS), *((f"band 5 {m}", f"band5_{m}", False) for m in MODS),
         *((f"band 8 {m}", f"band8_{m}", False) for m in MODS),
         *((f"spectrum max abs log10 {m}", f"spectrum_max_abs_log10_{m}", False) for m in MODS),
         *((f"detail coherence {m}", f"coherence_vs_real_{m}", False) for m in MODS),
         ("background RMS outside the brain (evaluate's)", "eval_background_rms", False),
         *((f"histogram W1 {m}", f"histogram_w1_{m}", False) for m in MODS))
print()
pair = {k: v for k, v in runs.items() if k[0] in ("skip 0.05", "shift")}
for line in ac.report(pair, "shift", "skip 0.05", TESTS, []):
    print(line)
print("(no pairs: the arm has no Frechet figures)\n\n## Every run, img004's beside (read as a table: two seeds "
      "against two allow no p below 0.333)\n")
for line in ac.table(runs):
    print(line)
