"""Which voxels set a case's intensity scale in evaluate's pipeline before session 51 (OLD: the real pipeline's
ScaleBrainPercentilesd, percentiles over the non-zero voxels): the scaler instrumented, for two real cases (the first
lines: their region's fraction of the grid, and per channel the 0.5th / 99.5th percentiles, min, median, max over
it and the channel's non-zero fraction) and the first four cases of each generated folder read by the old synthetic
pipeline (region_frechet.old_synthetic_transforms: written [0, 1] units).

    python instrument.py /work/s46/gen_tail0 /work/s50/cpu/gen_x0_detail100_skip005_maskcond_seed1 > instrument.txt
"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/benchmarks")
from quality_common import _RealCases
from quality_scale import eval_scale_overrides
import medidiff.data.transforms as T
sys.path.insert(0, str(Path(__file__).resolve().parent))
from region_frechet import old_synthetic_transforms

R = Path("/work/main/benchmarks/results")
rec = []
orig = T.ScaleBrainPercentilesd.__call__
def call(self, data):
    d = dict(data)
    for key in self.key_iterator(d):
        arr = np.asarray(d[key])
        mask = T.brain_mask(arr)[0]
        row = {"mask_frac": mask.mean(), "n_mask": int(mask.sum())}
        for c in range(arr.shape[0]):
            v = arr[c][mask]
            lo, hi = np.percentile(v, [self.lo, self.hi])
            row[c] = (lo, hi, v.min(), np.median(v), v.max(), (arr[c] != 0).mean())
        rec.append(row)
    return orig(self, data)
T.ScaleBrainPercentilesd.__call__ = call
real = _RealCases(R / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml",
                  R / "quality_scale_h200_20261205/manifest.json", Path("/work/s47/anat1536"), 2, eval_scale_overrides())
print(f"real: {len(rec)} cases (the first training and held-out ones)")
for r in rec: print({k: (np.round(v, 4) if not isinstance(v, (int, float)) else round(v, 4)) for k, v in r.items()})
for folder in sys.argv[1:]:
    rec.clear()
    real._syn_tf = old_synthetic_transforms(real.dcfg)
    real.synthetic(Path(folder))
    print(folder)
    for r in rec[:4]:
        print(" mask_frac %.3f" % r["mask_frac"], " ".join(f"c{c}: lo {r[c][0]:.4f} hi {r[c][1]:.4f} min {r[c][2]:.4f} med {r[c][3]:.4f} max {r[c][4]:.4f} nz {r[c][5]:.3f}" for c in range(4)))
