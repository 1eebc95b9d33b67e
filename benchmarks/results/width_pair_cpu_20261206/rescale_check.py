"""What evaluate's per-case rescale does to a generated case's t1c (session 50, after ends.py): the first three of
the shipped joint model's CPU cases (/work/s46/gen_tail0) as written (back to [-1, 1]) against the same cases
through the evaluation pipeline (quality_common._RealCases.synthetic: each case's brain 0.5-99.5th percentiles to
[-1, 1]); a least-squares line over the voxels above -1, and both sides' 0.5 / 50 / 99.5th percentiles of them.

    python rescale_check.py > rescale_check.txt
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
sys.path.insert(0, str(HERE))
from ends import written  # noqa: E402
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

R = HERE.parent
real = _RealCases(R / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml",
                  R / "quality_scale_h200_20261205/manifest.json", Path("/work/s47/anat1536"), 2, eval_scale_overrides())
for folder in (Path("/work/s46/gen_tail0"), Path("/work/s50/cpu/gen_x0_detail100_skip005_maskcond_seed1")):
    raw, _ = written(folder)
    ev = np.asarray(real.synthetic(folder).images)
    print(folder, "scale:", real.dcfg.percentiles, real.dcfg.percentile_region, real.dcfg.percentile_top)
    for i in range(3):
        a, b = raw[i, 1].ravel(), ev[i, 1].ravel()
        inside = a > -0.999
        k, c = np.polyfit(a[inside], b[inside], 1)
        print(f"  case {i}: evaluated = {k:.3f} x written + {c:.3f}; written 0.5/50/99.5th",
              np.percentile(a[inside], [0.5, 50, 99.5]).round(3), "evaluated", np.percentile(b[inside], [0.5, 50, 99.5]).round(3))
