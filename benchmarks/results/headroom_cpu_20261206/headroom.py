"""Session 53. Real tumour voxels on the outside-the-tumour scale (normal brain to [-1, 0], clipped at 1): how far above the
normal brain's top do the tumours reach, and how many sit at the clip? (what a full-amplitude scale with headroom
would need)"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/benchmarks/results/denoise_curve_cpu_20261202")
from denoise_curve import model_and_held_out
from medidiff.data.dataset import collate_cases
from medidiff.training.diffusion import model_input
pipe, cfg, held = model_and_held_out("/work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0",
                                     "/work/s53/anat400", "/work/s53/manifest400.json", Path("/work/s53/headroom_run"))
m = 4; mods = ["t1n", "t1c", "t2w", "t2f"]
vals = {k: {mo: [] for mo in mods} for k in ("ET", "ED", "NCR")}
n = 0
for i in range(len(held)):
    x, _ = model_input(collate_cases([held[i]]), cfg)
    wt, tc, et = (x[0, m] > 0).numpy(), (x[0, m + 1] > 0).numpy(), (x[0, m + 2] > 0).numpy()
    if not et.any():
        continue
    regions = {"ET": et, "ED": wt & ~tc, "NCR": tc & ~et}
    for k, r in regions.items():
        for c, mo in enumerate(mods):
            vals[k][mo].append(x[0, c].numpy()[r])
    n += 1
    if n == 24:
        break
print(f"{n} held-out cases with ET; values on the model's scale (normal brain [-1, 0]; clip 1)")
for k in vals:
    for mo in mods:
        v = np.concatenate(vals[k][mo])
        q = np.percentile(v, [50, 90, 99])
        print(f"{k:3s} {mo}: median {q[0]:+.3f} p90 {q[1]:+.3f} p99 {q[2]:+.3f}  share > 0 {np.mean(v > 0):.3f}  at the clip (>= 0.999) {np.mean(v >= 0.999):.4f}")
