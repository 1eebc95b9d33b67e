"""The brains' size, place and extent, generated against real (issue 16; CPU, 2026-12-05): what is left of the
Frechet gap after calibration is a shift of the deepest features' mean that every generated case shares; a
brain drawn bigger, smaller or elsewhere in the grid would give one. Per set: brain volume (evaluate's brain
mask, voxels of the 2 mm grid), its centroid and extent per axis, the tumour's volume and share of cases, and
each modality's median and spread in the normal brain (brain outside WT): their mean and spread over cases.

    python shape_stats.py CONFIG MANIFEST ROOT GENERATED N_REAL > shape.json
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval.realism import brain_masks  # noqa: E402


def stats(images, labels, mods) -> dict:
    brain = brain_masks(images.float())
    x = images.float().numpy()
    rows = []
    for i, b in enumerate(brain):
        idx = np.argwhere(b)
        wt = labels[i, 0].bool().numpy()
        normal = b & ~wt
        levels = [np.median(x[i, c][normal]) for c in range(len(mods))] + [np.std(x[i, c][normal]) for c in range(len(mods))]
        rows.append([b.sum(), *ndimage.center_of_mass(b), *(idx.max(0) - idx.min(0) + 1), *levels, wt.sum()])
    a = np.asarray(rows, np.float64)
    names = ["brain_voxels", "centroid_x", "centroid_y", "centroid_z", "extent_x", "extent_y", "extent_z",
             *[f"normal_median_{m}" for m in mods], *[f"normal_sd_{m}" for m in mods], "wt_voxels"]
    out = {k: {"mean": float(a[:, j].mean()), "sd": float(a[:, j].std(ddof=1)), "p5": float(np.percentile(a[:, j], 5)),
               "p95": float(np.percentile(a[:, j], 95))} for j, k in enumerate(names)}
    out["share_with_tumour"] = float((a[:, -1] > 0).mean())
    out["wt_voxels_of_tumour_cases"] = float(a[a[:, -1] > 0, -1].mean()) if (a[:, -1] > 0).any() else None
    return out


def main() -> None:
    config, manifest, root, generated, n_real = sys.argv[1:6]
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n_real))
    syn = real.synthetic(Path(generated))
    mods = list(real.dcfg.modalities)
    out = {name: {"cases": len(s), **stats(s.images, s.labels, mods)}
           for name, s in (("real_train", real.train), ("real_heldout", real.heldout), ("generated", syn))}
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
