"""Paired WT sizes per case: heun30 vs euler30 (the same seeds start from the same noise)."""
import json, math, sys
from pathlib import Path
import nibabel as nib
import numpy as np
from scipy import stats

root = Path(sys.argv[1])
variants = sys.argv[2:]
sizes = {}
for v in variants:
    cases = sorted((root / "generated" / v).glob("case_*"))
    sizes[v] = [int((np.asarray(nib.load(str(c / "seg.nii.gz")).dataobj) > 0).sum()) for c in cases]
lines = [f"WT voxels per case (seeds 0-{len(sizes[variants[0]]) - 1}):"]
for v in variants:
    lines.append(f"  {v:8s} " + " ".join(f"{s:5d}" for s in sizes[v]))
ref = variants[0]
out = {"sizes": sizes, "ratios": {}}
for v in variants[1:]:
    pairs = [(a, b) for a, b in zip(sizes[v], sizes[ref]) if a > 0 and b > 0]
    one = sum((a > 0) != (b > 0) for a, b in zip(sizes[v], sizes[ref]))
    logs = np.log([a / b for a, b in pairs])
    m, se = logs.mean(), logs.std(ddof=1) / math.sqrt(len(logs))
    t = stats.t.ppf(0.975, len(logs) - 1)
    lo, hi = math.exp(m - t * se), math.exp(m + t * se)
    lines.append(f"{v} vs {ref}: WT size ratio {math.exp(m):.3f} (95% t {lo:.3f}-{hi:.3f}) over {len(pairs)} cases; "
                 f"tumour in one only: {one}")
    out["ratios"][v] = {"ratio": math.exp(m), "t95": [lo, hi], "cases": len(pairs), "tumour_in_one_only": one}
print("\n".join(lines))
(root / "paired_tumour_sizes.txt").write_text("\n".join(lines) + "\n")
(root / "paired_tumour_sizes.json").write_text(json.dumps(out, indent=1))
