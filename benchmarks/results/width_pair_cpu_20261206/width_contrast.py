"""The tumour's contrast and t1c's stray bright voxels of the sets width_pair.py reads, paired case by case: the
three sets share their label maps case for case (the joint model drew them; both second stages drew images for
them), so each reading's per-case difference between two sets is the width's (or the stage's) effect on that
case's tumour. medidiff.eval.realism.tumour_contrast on the shipped scale (each case's brain 0.5-99.5th
percentiles to [-1, 1], as evaluate reads it), beside the first N real training cases' medians; and each case's
normal-brain median (the level that t1c's strays would compress).

    python width_contrast.py CONFIG MANIFEST ROOT N NAME=FOLDER[,FOLDER...] ... > width_contrast.json
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases, named_folder_sets  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval.realism import brain_masks, tumour_contrast  # noqa: E402

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
READINGS = ("et_contrast", "et_upper", "ed_contrast", "top_in_tumour", "normal_level")


def readings(case_set) -> dict[str, np.ndarray]:
    """Per case and modality, (N, C): tumour_contrast's readings and the normal brain's median."""
    images, labels = np.asarray(case_set.images), np.asarray(case_set.labels)
    masks = brain_masks(images)
    out = tumour_contrast(images, masks, labels)
    level = np.full((len(images), len(MODALITIES)), np.nan)
    for i, (x, lab, brain) in enumerate(zip(images, labels, masks)):
        wt = np.asarray(lab[0]) > 0.5  # the normal brain as tumour_contrast's: outside WT dilated 2 voxels
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        for c in range(len(MODALITIES)):
            level[i, c] = float(np.median(x[c][normal]))
    return {**{k: out[k] for k in READINGS if k != "normal_level"}, "normal_level": level}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of a - b over the cases where both are finite, with its 95 % t interval."""
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if d.size < 3:
        return {"cases": int(d.size)}
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return {"cases": int(d.size), "mean": round(float(d.mean()), 4),
            "t95": [round(float(d.mean() - half), 4), round(float(d.mean() + half), 4)]}


def main() -> None:
    config, manifest, root, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    sets = named_folder_sets(sys.argv[5:])
    real = _RealCases(config, manifest, root, n, eval_scale_overrides())
    per = {"real_train": readings(real.train)}
    for name, folders in sets.items():
        parts = [readings(real.synthetic(f)) for f in folders]  # a set generated in parts: joined in order
        per[name] = {k: np.concatenate([r[k] for r in parts]) for k in READINGS}
    med = lambda v: round(float(np.nanmedian(v)), 4) if np.isfinite(v).any() else None  # noqa: E731
    out = {"medians": {name: {k: {m: med(r[k][:, c]) for c, m in enumerate(MODALITIES)} for k in READINGS}
                       for name, r in per.items()},
           "cases": {name: int(r["et_contrast"].shape[0]) for name, r in per.items()}}
    names = [k for k in sets]
    assert len({out["cases"][k] for k in names}) == 1, f"paired sets differ in size: {out['cases']}"
    out["paired"] = {f"{a} - {b}": {k: {m: paired(per[a][k][:, c], per[b][k][:, c]) for c, m in enumerate(MODALITIES)}
                                    for k in READINGS} for i, a in enumerate(names) for b in names[i + 1:]}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
