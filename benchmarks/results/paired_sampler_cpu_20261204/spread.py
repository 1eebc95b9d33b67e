"""Is the second stage's T2 tumour too bright, or its normal brain too narrow? Per case (paired, the same label map),
on each scale: the normal brain's 5th / 50th / 95th percentiles and the edema's and ET's medians, generated vs real.

    python spread.py CONFIG MANIFEST ROOT GENERATED OUT.json    (GENERATED: paired_contrast's generated folder)
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from paired_contrast import SCALES, source_ids  # noqa: E402
from quality_common import _RealCases  # noqa: E402
from scipy import ndimage  # noqa: E402

from medidiff.eval.realism import _unit, brain_masks  # noqa: E402

config, manifest, root, folder = map(Path, sys.argv[1:5])
mods = ["t1n", "t1c", "t2w", "t2f"]
ids = source_ids(folder, mods)
out = {}
for scale, ov in SCALES.items():
    real = _RealCases(config, manifest, root, None, ov(), train_ids=ids)
    gen = real.synthetic(folder)
    rows = {}
    for side, cs in (("generated", gen), ("real", real.train)):
        imgs, labs = np.asarray(cs.images), np.asarray(cs.labels) > 0.5
        masks = brain_masks(imgs)
        per = []
        for i in range(len(imgs)):
            wt, tc, et = labs[i]
            near = ndimage.binary_dilation(wt, iterations=2)
            normal = masks[i] & ~near
            u = _unit(imgs[i]) * 2 - 1
            per.append({m: {"p5": float(np.percentile(u[c][normal], 5)), "p50": float(np.median(u[c][normal])),
                            "p95": float(np.percentile(u[c][normal], 95)),
                            "ed": float(np.median(u[c][masks[i] & wt & ~tc])) if (wt & ~tc).any() else None,
                            "et": float(np.median(u[c][masks[i] & et])) if et.any() else None}
                        for c, m in enumerate(mods)})
        rows[side] = per
    out[scale] = rows
    for m in mods:
        d = {k: np.array([g[m][k] - r[m][k] for g, r in zip(rows["generated"], rows["real"])
                          if g[m][k] is not None and r[m][k] is not None]) for k in ("p5", "p50", "p95", "ed", "et")}
        spread = np.array([(g[m]["p95"] - g[m]["p5"]) - (r[m]["p95"] - r[m]["p5"]) for g, r in zip(rows["generated"], rows["real"])])
        print(scale, m, " ".join(f"{k} {v.mean():+.3f}" for k, v in d.items()), f"spread(p95-p5) {spread.mean():+.3f}",
              f"real spread {np.mean([r[m]['p95'] - r[m]['p5'] for r in rows['real']]):.3f}")
Path(sys.argv[5]).write_text(json.dumps(out, indent=1))
