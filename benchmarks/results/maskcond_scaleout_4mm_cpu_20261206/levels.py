"""Each modality's normal-brain level on the shipped scale (each case's brain 0.5-99.5th percentiles to [-1, 1]),
by whether the case holds ET, for real training and held-out cases and for generated sets. On the shipped scale a
case's normal-brain level depends on its tumour's brightness (t1c's ET, t2f's edema hold the brain's top
percentiles); a second stage trained on the outside-the-tumour scale leaves that coupling to evaluate's rescaling.
(../et_where_cpu_20261204/normal_level.py, t1c only, extended to every modality with the robust spread.)

    python levels.py CONFIG MANIFEST ROOT N OUT.json NAME=GENERATED...
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

MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def levels(case_set) -> dict:
    images, labels = np.asarray(case_set.images), np.asarray(case_set.labels)
    masks = brain_masks(images)
    rows: dict[str, dict[str, list[float]]] = {m: {"with_et": [], "without_et": []} for m in MODALITIES}
    for x, lab, brain in zip(images, labels, masks):
        wt, et = np.asarray(lab[0]) > 0.5, np.asarray(lab[2]) > 0.5
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        for c, m in enumerate(MODALITIES):
            rows[m]["with_et" if et.any() else "without_et"].append(float(np.median(x[c][normal])))

    def summary(v: list[float]) -> dict:
        if not v:
            return {"cases": 0}
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        return {"cases": len(v), "median": round(float(q50), 3), "iqr": round(float(q75 - q25), 3)}

    return {m: {k: summary(v) for k, v in per.items()} | {"all": summary(per["with_et"] + per["without_et"])}
            for m, per in rows.items()}


def main(config: str, manifest: str, root: str, n: str, out: str, *sets: str) -> None:
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n), eval_scale_overrides())
    named = {"real_train": real.train, "real_heldout": real.heldout}
    named |= {name: real.synthetic(Path(folder)) for name, folder in (s.split("=", 1) for s in sets)}
    result = {name: levels(cases) for name, cases in named.items()}
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    for name, r in result.items():
        print(name, {m: (r[m]["with_et"].get("median"), r[m]["without_et"].get("median"), r[m]["all"].get("iqr"))
                     for m in MODALITIES})


if __name__ == "__main__":
    main(*sys.argv[1:])
