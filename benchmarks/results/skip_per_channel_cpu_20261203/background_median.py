"""The generated volumes' median per modality (most of the grid is outside the head, so the median reads the
background's level: 0 in real cases), averaged over the first N cases of each arm.

    python background_median.py GEN_DIR N ARM... > background_median.json
"""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def main(gen: Path, n: int, arms: list[str]) -> dict:
    out = {}
    for arm in arms:
        cases = sorted((gen / arm).glob("case_*"))[:n]
        med = [[float(np.median(nib.load(c / f"{m}.nii.gz").get_fdata())) for m in MODALITIES] for c in cases]
        out[arm] = {"cases": len(cases), "median": dict(zip(MODALITIES, np.mean(med, axis=0).round(4).tolist()))}
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]), indent=1))
