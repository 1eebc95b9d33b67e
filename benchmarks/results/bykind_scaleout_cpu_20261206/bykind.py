"""Session 53: the by-kind unlabelled-tumour check and the mask-fidelity ratios from evaluate's fidelity reports, one
column a report: python bykind.py NAME=report.json ... > bykind.txt"""
import json
import sys

cols = [(a.split("=", 1)[0], json.load(open(a.split("=", 1)[1]))["results"]["fidelity"]) for a in sys.argv[1:]]
print("unlabelled-tumour check by kind: share of generated cases flagged (allowed; pass) [mean predicted mL away "
      "from the label, generated / real] (generated cases of the kind)")
for kind in ("tumour-free", "with a tumour"):
    for region in ("WT", "TC", "ET"):
        cells = []
        for name, f in cols:
            r = f["unlabelled_tumour"]["strata"][kind]["regions"][region]
            cells.append(f"{name}: {r['share_flagged']['synthetic']:.2f} ({r['allowed_share']:.2f}; "
                         f"{'pass' if r['pass'] else 'FAIL'}) [{r['mean_ml']['synthetic']:.1f} / {r['mean_ml']['real']:.1f} mL] "
                         f"({r['cases']['synthetic']})")
        print(f"{kind:13s} {region}: " + " | ".join(cells))
print("mask fidelity, Dice on generated / on real held-out (cases with a tumour):")
for name, f in cols:
    print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in f["dice_ratio_to_real"].items()))
