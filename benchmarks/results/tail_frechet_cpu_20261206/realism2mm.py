"""medidiff evaluate's realism checks for the 2 mm CPU sets of run.sh: ../speckle_lowt_cpu_20261205/realism4mm.py
on the shipped model's experiment config, against 96 real training and 96 held-out cases of the 512-case set (the
GPU job's realism phase used 96 + 96 of the 1536): one JSON report a set in OUT, one line a set on stdout.

    python realism2mm.py OUT NAME=FOLDER ...
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "speckle_lowt_cpu_20261205"))
import realism4mm  # noqa: E402

if __name__ == "__main__":
    realism4mm.main(HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml", 96)
