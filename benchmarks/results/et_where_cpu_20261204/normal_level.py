"""t1c's normal-brain level on the shipped scale (each case's brain 0.5-99.5th percentiles to [-1, 1]), by whether
the case holds ET: real training and held-out cases against a generated set. The shipped scale couples a case's
normal-brain level to its ET (the ET holds the brain's top percentile); a generator that draws the level of a
case without ET beside an ET it draws is what the t1c defects look like:

    python normal_level.py CONFIG MANIFEST ROOT N OUT.json NAME=GENERATED...
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval.realism import brain_masks  # noqa: E402

T1C = 1


def levels(case_set) -> dict:
    images, labels = np.asarray(case_set.images), np.asarray(case_set.labels)
    masks = brain_masks(images)
    rows = {"with_et": [], "without_et": []}
    for x, lab, brain in zip(images, labels, masks):
        wt, et = np.asarray(lab[0]) > 0.5, np.asarray(lab[2]) > 0.5
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        rows["with_et" if et.any() else "without_et"].append(float(np.median(x[T1C][normal])))
    return {k: {"cases": len(v), "median": round(float(np.median(v)), 3) if v else None,
                "q25_q75": [round(float(q), 3) for q in np.percentile(v, [25, 75])] if v else None}
            for k, v in rows.items()}


config, manifest, root, n, out, *sets = sys.argv[1:]
real = _RealCases(Path(config), Path(manifest), Path(root), int(n), eval_scale_overrides())
result = {"real_train": levels(real.train), "real_heldout": levels(real.heldout)}
for s in sets:
    name, folder = s.split("=", 1)
    result[name] = levels(real.synthetic(Path(folder)))
Path(out).write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result, indent=1))
