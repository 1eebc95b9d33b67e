"""Per case and modality: where the normal brain lands under the pipeline's scaling (brain 0.5-99.5th pct -> [-1, 1])
and under the same percentiles taken over the brain outside the tumour (WT), and how much of ET / WT then clips."""
import json, sys
import numpy as np, nibabel as nib
from pathlib import Path
root = Path(sys.argv[1]); man = json.loads(Path(sys.argv[2]).read_text())["training"]
mods = ["t1n", "t1c", "t2w", "t2f"]
rows = {m: [] for m in mods}
for c in man:
    x = np.stack([np.asarray(nib.load(root / c[m]).dataobj, dtype=np.float32) for m in mods])
    lab = np.asarray(nib.load(root / c["label"]).dataobj)
    brain = (x != 0).any(0); wt = (lab > 0) & brain; et = (lab == 3) & brain; normal = brain & ~wt
    for i, m in enumerate(mods):
        v = x[i]
        for name, ref in (("now", brain), ("outside_wt", normal)):
            lo, hi = np.percentile(v[ref], [0.5, 99.5])
            s = (v - lo) / (hi - lo) * 2 - 1
            rows[m].append({"case": c["case_id"], "scale": name, "tumour": bool(wt.any()), "et": int(et.sum()),
                            "normal_median": float(np.median(np.clip(s[normal], -1, 1))),
                            "et_median_unclipped": float(np.median(s[et])) if et.any() else None,
                            "et_clipped": float((s[et] > 1).mean()) if et.any() else None,
                            "wt_clipped": float((s[wt] > 1).mean()) if wt.any() else None})
print(json.dumps(rows))
