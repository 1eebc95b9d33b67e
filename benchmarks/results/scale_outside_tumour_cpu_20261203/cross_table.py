"""cross_table.md: every 4 mm arm judged on both intensity scales (eval_brain_scale/, eval_out_scale/: realism.py's output).

    python cross_table.py                                   # this folder's table
    python cross_table.py --out DIR EVAL_DIR=NAME ... -- ARM ...   # another record's (../scale_matched_cpu_20261203/)
"""
import json
import sys
from pathlib import Path

here = Path(__file__).parent
evals = [("eval_brain_scale", "the brain (shipped)"), ("eval_out_scale", "the brain outside WT, top 0")]
arms = ["control", "control_seed1", "scale_brain_top0", "scale_brain_top0_seed1", "scale_out_top0", "scale_out_top0_seed1",
        "scale_out_top0_lll30", "scale_out_top0_lll30_seed1"]
if sys.argv[1:2] == ["--out"]:
    if "--" not in sys.argv[3:]:
        sys.exit("usage: cross_table.py --out DIR EVAL_DIR=NAME ... -- ARM ...")
    here = Path(sys.argv[2])
    split = sys.argv.index("--")
    evals = [tuple(a.split("=", 1)) for a in sys.argv[3:split]]
    arms = sys.argv[split + 1:]
rows = ["| judged on the scale of | arm | histogram W1 t1n / t1c / t2w / t2f (floor) | detail coherence synthetic - real "
        "t1n / t1c / t2w / t2f | outside RMS, non-zero share | spectrum max abs log10 t1n / t1c / t2w / t2f | tumours; size W1 |",
        "|---|---|---|---|---|---|---|"]
for ev, name in evals:
    for arm in arms:
        r = json.loads((here / ev / "realism" / f"{arm}.json").read_text())
        c = (r["results"]["realism"] if "results" in r else r)["checks"]
        h, coh = c["intensity_histogram"]["per_modality"], c["detail_coherence"]["per_modality"]
        sp, bg, t = c["power_spectrum"]["per_modality"], c["background"], c["tumour_statistics"]
        share = t["share_with_tumour"]
        rows.append(f"| {name} | {arm} | " + " / ".join(f"{h[m]['wasserstein']:.3f}" for m in h)
                    + " (" + " / ".join(f"{h[m]['floor']:.3f}" for m in h) + ") | "
                    + " / ".join(f"{coh[m]['synthetic'] - coh[m]['real']:+.3f}" for m in coh)
                    + f" | {bg['synthetic_rms']:.4f}, {bg['synthetic_fraction_nonzero']:.3f} | "
                    + " / ".join(f"{sp[m]['max_abs_log10_ratio']:.2f}" for m in sp)
                    + f" | {round(share['synthetic'] * share['cases'])} of {share['cases']}; "
                      f"{t['size_log10_wt_fraction']['wasserstein']:.3f} |")
(here / "cross_table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
