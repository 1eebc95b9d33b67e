"""How far a generated brain's box centre sits from the grid centre (evaluate's synthetic pipeline crops to the non-zero
box, so a hazy generated case is never cropped or re-centred) against real cases through the real pipeline (cropped to
their brain box, then centred): the realism estimator's brain, 48 cases a side (the shipped model's untailed set).

    python centre.py > centre.txt
"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/benchmarks")
sys.path.insert(0, "/work/main/benchmarks/results/width_pair_cpu_20261206")
from quality_common import _RealCases
from quality_scale import eval_scale_overrides
from medidiff.eval.realism import brain_masks

def offsets(images):
    out = []
    for m in brain_masks(images):
        idx = np.argwhere(m)
        c = (idx.min(0) + idx.max(0)) / 2
        out.append(c - (np.array(m.shape) - 1) / 2)
    return np.asarray(out)

real = _RealCases(Path("/work/s51/config.yaml"), Path("/work/s51/manifest.json"), Path("/work/s47/anat1536"), 48, eval_scale_overrides())
r = offsets(np.asarray(real.train.images))
g = offsets(np.asarray(real.synthetic(Path("/work/s46/gen48_tail0")).images))
for name, o in (("real (cropped, centred)", r), ("generated (as drawn)", g)):
    print(name, "box-centre offset from the grid centre, voxels: median", np.median(o, 0).round(2), "max |.|", np.abs(o).max(0).round(1))
