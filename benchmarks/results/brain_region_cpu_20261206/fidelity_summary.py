"""fidelity_<old|new>/report.json -> fidelity_summary.txt: the Dice ratio to real per region (cases with the region),
and the unlabelled-tumour check's share flagged per region (synthetic against real, the allowance), per pipeline.

    python fidelity_summary.py fidelity_old/report.json fidelity_new/report.json > fidelity_summary.txt
"""
import json
import sys

for path in sys.argv[1:]:
    f = json.load(open(path))["results"]["fidelity"]
    print(path, f"({f['cases']} synthetic cases, {f['real_heldout']['cases']} real held-out)")
    print("  Dice ratio to real (cases with the region):", {r: round(float(v), 3) for r, v in f["dice_ratio_to_real"].items()})
    u = f["unlabelled_tumour"]
    for r, v in u["regions"].items():
        print(f"  unlabelled {r}: synthetic {v['share_flagged']['synthetic']:.3f} real {v['share_flagged']['real']:.3f} "
              f"allowed {v['allowed_share']:.3f} mean mL syn {v['mean_ml']['synthetic']:.2f} real {v['mean_ml']['real']:.2f} "
              f"{'pass' if v['pass'] else 'FAIL'}")
