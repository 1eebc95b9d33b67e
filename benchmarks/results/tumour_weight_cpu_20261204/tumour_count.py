"""Cases with a tumour and tumours per case, generated arms beside real cases: a tumour is a 26-connected WT
component of at least a tenth of the case's largest (so a few stray voxels do not count).

    python tumour_count.py REAL_ROOT N_REAL OUT.json ARM=GEN_DIR ...
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


def tumours(label: np.ndarray, min_share: float = 0.1) -> int:
    comp, n = ndimage.label(label > 0, structure=np.ones((3, 3, 3)))
    if n == 0:
        return 0
    sizes = np.bincount(comp.ravel())[1:]
    return int((sizes >= min_share * sizes.max()).sum())


def summary(files: list[Path]) -> dict:
    counts = [tumours(np.asarray(nib.load(f).dataobj)) for f in files]
    return {"cases": len(counts), "with_tumour": sum(c > 0 for c in counts),
            "tumours_per_case": {str(k): int(v) for k, v in enumerate(np.bincount(counts))}}


def main() -> None:
    real_root, n_real, out, *arms = sys.argv[1:]
    result = {"real": summary(sorted(Path(real_root).glob("*/*seg*.nii.gz"))[: int(n_real)])}
    for arm in arms:
        name, path = arm.split("=", 1)
        result[name] = summary(sorted(Path(path).glob("case_*/seg.nii.gz")))
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
