"""Evaluate's own tumour_contrast rows for t1c (brain scale: each region's median minus the normal brain's outside
the tumour dilated 2 voxels; 192 GPU cases against the held-out fold), read from the quality_scale records of the
outside-the-tumour scale's four seeds and the brain-scale recipe's four (session 60). python eval_rows.py"""
import json
from pathlib import Path

here = Path(__file__).resolve().parent
RUNS = {  # label -> (record, run)
    "scale seed 0": ("quality_scaleout_h100_20261206", "x0_detail100_labels_lll100_skip005_scaleout_seed0"),
    "scale seed 1": ("quality_scaleout_h100_20261206", "x0_detail100_labels_lll100_skip005_scaleout_seed1"),
    "scale seed 2 (shipped)": ("quality_scaleout_seeds23_h100_20261207", "x0_detail100_labels_lll100_skip005_scaleout_seed2"),
    "scale seed 2, fresh cases": ("quality_scaleout_seed2_fresh_h100_20261207", "x0_detail100_labels_lll100_skip005_scaleout_seed2"),
    "scale seed 3": ("quality_scaleout_seeds23_h100_20261207", "x0_detail100_labels_lll100_skip005_scaleout_seed3"),
    "brain seed 0 (replaced)": ("seedspread_h100_20261206", "x0_detail100_labels_lll100_skip005_seed0"),
    "brain seed 1": ("seedspread_h100_20261206", "x0_detail100_labels_lll100_skip005_seed1"),
    "brain seed 2": ("seedpick4_h100_20261207", "x0_detail100_labels_lll100_skip005_seed2"),
    "brain seed 3": ("seedpick4_h100_20261207", "x0_detail100_labels_lll100_skip005_seed3"),
}
print("| run | record | ET | edema | core |")
print("| --- | --- | --- | --- | --- |")
real = None
for label, (record, run) in RUNS.items():
    tc = json.loads((here.parent / record / "eval" / run / "report.json").read_text())["results"]["realism"]["checks"]["tumour_contrast"]
    row = [tc[k]["t1c"]["synthetic_median"] for k in ("et_contrast", "ed_contrast", "ncr_contrast")]
    real = real or [tc[k]["t1c"]["real_median"] for k in ("et_contrast", "ed_contrast", "ncr_contrast")]
    print(f"| {label} | {record} | " + " | ".join(f"{v:+.3f}" for v in row) + " |")
print("| real (held-out fold, the same in every record) | | " + " | ".join(f"{v:+.3f}" for v in real) + " |")
