"""levels.md from the parts JSONs (histogram_parts.py output): per set and modality, the brain histogram W1 (its
normal-brain part), the normal brain's median per case with a tumour against real training's, and the enhancing
tumour's median.

    python3 summary.py                      # this folder's parts, into levels.md
    python3 summary.py A.json B.json > X.md # other parts files (another record's), to stdout
"""
import json
import sys
from pathlib import Path

import numpy as np

here = Path(__file__).parent
rows = ["| set | modality | W1 brain (floor) | W1 normal brain (floor) | normal brain median, synthetic - real | "
        "ET median synthetic / real |", "|---|---|---|---|---|---|"]
given = [Path(a) for a in sys.argv[1:]]
names = given or [here / n for n in ("parts.json", "parts_4mm_control.json", "parts_4mm_img_lll30.json",
                                     "parts_4mm_img_lll30_lab300.json")]
for path in names:
    if not path.is_file():
        continue
    name = path.name
    r = json.loads(path.read_text())["per_modality"]
    for m, x in r.items():
        med = x["normal_brain_median_per_case"]
        et = {k: np.nanmean([row[1] for row in v if row[0] > 0]) for k, v in x["per_case_et_voxels_et_median_normal_median"].items()}
        rows.append(f"| {name[:-5]} | {m} | {x['w1_all']:.3f} ({x['w1_all_floor']:.3f}) | {x['w1_normal_brain']:.3f} "
                    f"({x['w1_normal_floor']:.3f}) | {med['synthetic']['with_tumour'] - med['real_train']['with_tumour']:+.2f} | "
                    f"{et['synthetic']:.2f} / {et['real_train']:.2f} |")
if not given:
    (here / "levels.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
