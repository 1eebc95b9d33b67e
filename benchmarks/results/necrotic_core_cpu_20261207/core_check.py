"""Session 61: the tumour statistics check (with its new necrotic-core rows) on label maps alone: the shipped
model's 64 CPU cases (utility_shipped_cpu_20261207's) and the replaced model's 48 (tissue_cpu_20261206's) against
the anatomy set's first N training-fold cases, the floor the first N held-out-fold cases against them (as evaluate
builds it with held-out cases). WT fractions are of each set's own grid (real 120x120x78, synthetic 80x96x80, both
2 mm): the size rows are not comparable here; the share rows are. python core_check.py N (repository root, /tmp/venv)"""
import glob
import json
import sys
import types

import nibabel as nib
import numpy as np

from medidiff.eval.realism import _tumour_check, tumour_statistics

def labels(paths):
    out = []
    for p in paths:
        seg = np.asarray(nib.load(p).dataobj).astype(np.int16)
        out.append(np.stack([seg > 0, (seg == 1) | (seg == 3), seg == 3]))
    return np.stack(out)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 192
items = json.load(open("/work/s53/lease/quality_scale/manifest.json"))["training"]
def ids(train): return sorted(it["case_id"] for it in items if (it.get("fold") != 0) == train)[:N]
def real(c): return f"/work/s53/anat1536/{c}/{c}-seg.nii.gz"
train, held = tumour_statistics(labels(map(real, ids(True)))), tumour_statistics(labels(map(real, ids(False))))
ref = types.SimpleNamespace(tumours=(train, held, train))
for name, folder in (("shipped (64 CPU cases)", "/work/s57/cpu/bf16_64"), ("replaced (48)", "/work/s53/tissue/gen48")):
    syn = tumour_statistics(labels(sorted(glob.glob(f"{folder}/case_*/seg.nii.gz"))))
    t = _tumour_check(syn, ref, size_factor=2.0, size_abs_tol=0.1)
    print(f"## {name}: pass {t['pass']}")
    for key in ("share_with_tumour", "share_with_several_tumours", "share_with_core"):
        v = t[key]
        print(f"- {key}: synthetic {v['synthetic']:.3f} real {v['real']:.3f} floor {v['floor']:.3f} "
              f"allowed {v['allowed_difference']:.3f} cases {v['cases']} pass {v['pass']}")
    for stats, who in ((syn, "synthetic"), (train, "real")):
        v = stats["log_core_share"][np.isfinite(stats["log_core_share"])]
        print(f"- log10 core / WT, {who}: quantiles 10/25/50/75/90 "
              + " / ".join(f"{q:.2f}" for q in np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])) + f" ({v.size} cases)")
    for key in ("et_share_of_wt_log10", "core_share_of_wt_log10"):
        v = t[key]
        print(f"- {key}: median synthetic {v['synthetic_median']:.3f} real {v['real_median']:.3f} W1 "
              f"{v['wasserstein']:.3f} floor {v['floor']:.3f} pass {v['pass']}")
