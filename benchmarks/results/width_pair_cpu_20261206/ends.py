"""Which end of a generated case's range moves its normal-brain level (width_contrast.json: t1c's normal brain at
+0.01 to +0.06 of its case's range on the shipped scale against real's -0.30): each case's brain 0.5th and 99.5th
percentiles and its normal brain's median (outside WT dilated 2 voxels) on the scale the models were trained on,
before evaluate's per-case rescale. Generated cases as written (`medidiff generate` writes [-1, 1] as [0, 1]: read
back to [-1, 1]); real training cases through the data pipeline (the training scale: each case's brain 0.5-99.5th
percentiles to [-1, 1], so their ends sit near -1 and +1 by construction, moved only by the brain mask's
definition). One brain mask for both (medidiff.eval.realism.brain_masks).

    python ends.py CONFIG MANIFEST ROOT N NAME=FOLDER[,FOLDER...] ... > ends.json
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases, named_folder_sets  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval.realism import brain_masks  # noqa: E402

MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def ends(images: np.ndarray, wts: np.ndarray) -> dict[str, np.ndarray]:
    """(N, C, X, Y, Z) in [-1, 1] and (N, X, Y, Z) WT masks -> per case and modality the brain's p0.5, p99.5 and
    the normal brain's median."""
    masks = brain_masks(images)
    out = {k: np.full((len(images), images.shape[1]), np.nan) for k in ("p0_5", "normal_median", "p99_5")}
    for i, (x, wt, brain) in enumerate(zip(images, wts, masks)):
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        for c in range(images.shape[1]):
            out["p0_5"][i, c], out["p99_5"][i, c] = np.percentile(x[c][brain], [0.5, 99.5])
            out["normal_median"][i, c] = np.median(x[c][normal])
    return out


def written(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    cases = sorted(d for d in folder.iterdir() if d.is_dir())
    imgs = np.stack([np.stack([np.asarray(nib.load(d / f"{m}.nii.gz").dataobj, np.float32) for m in MODALITIES])
                     for d in cases]) * 2 - 1
    wts = np.stack([np.asarray(nib.load(d / "seg.nii.gz").dataobj) > 0 for d in cases])
    return imgs, wts


def main() -> None:
    config, manifest, root, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    real = _RealCases(config, manifest, root, n, eval_scale_overrides())
    per = {"real_train": ends(np.asarray(real.train.images), np.asarray(real.train.labels[:, 0]) > 0.5)}
    for name, folders in named_folder_sets(sys.argv[5:]).items():
        parts = [ends(*written(f)) for f in folders]
        per[name] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = {name: {k: {m: [round(float(q), 3) for q in np.percentile(v[:, c], [25, 50, 75])]
                      for c, m in enumerate(MODALITIES)} for k, v in r.items()} for name, r in per.items()}
    out["how"] = "per set, reading and modality: the 25th / 50th / 75th percentile over cases"
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
