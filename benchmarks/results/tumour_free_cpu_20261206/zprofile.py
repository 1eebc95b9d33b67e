"""Per axial slice (z), the mean scaled intensity of each modality over the brain outside the (dilated) tumour
label, and the brain's area, for real held-out cases and a generated set on evaluate's grid and scale: where
in the head the generated tissue's level departs from real (the fidelity segmenter's tumour-free false tumours
sit ~15 voxels below the centre, t1c 0.45 there against 0.05 elsewhere).

    python zprofile.py CONFIG MANIFEST ROOT N GENERATED > zprofile.txt
"""
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.data.brain import estimated_brain_mask  # noqa: E402

MODS = ("t1n", "t1c", "t2w", "t2f")


def profile(images, labels):
    x = images.float().numpy(); lab = np.asarray(labels)
    Z = x.shape[-1]
    s = np.zeros((len(x), 4, Z)); area = np.zeros((len(x), Z)); hi = np.zeros((len(x), 4, Z))
    for i in range(len(x)):
        b = estimated_brain_mask(x[i]) & ~ndimage.binary_dilation(lab[i, 0] > 0, iterations=3)
        for z in range(Z):
            m = b[:, :, z]
            area[i, z] = m.sum()
            for c in range(4):
                v = x[i, c, :, :, z][m]
                s[i, c, z] = v.mean() if v.size > 50 else np.nan
                hi[i, c, z] = (v > 0.6).mean() if v.size > 50 else np.nan
    return s, area, hi


def main():
    config, manifest, root = (Path(a) for a in sys.argv[1:4]); n = int(sys.argv[4]); gen = Path(sys.argv[5])
    real = _RealCases(config, manifest, root, n, [*eval_scale_overrides(), "eval.device=cpu"])
    r, ra, rh = profile(real.heldout.images, real.heldout.labels)
    syn = real.synthetic(gen)
    g, ga, gh = profile(syn.images, syn.labels)
    free = np.asarray(syn.labels)[:, 0].reshape(len(g), -1).sum(1) == 0
    rfree = np.asarray(real.heldout.labels)[:, 0].reshape(len(r), -1).sum(1) == 0
    for name, lab in (("real held-out", np.asarray(real.heldout.labels)), ("generated", np.asarray(syn.labels))):
        t = lab[:, 0] > 0
        zc = [float(np.nonzero(t[i].any((0, 1)))[0].mean()) for i in range(len(t)) if t[i].any()]
        print(f"{name}: tumour label z centroid quantiles 10/50/90 %", np.round(np.quantile(zc, [0.1, 0.5, 0.9]), 1).tolist(),
              f"({len(zc)} cases with a tumour)")
    print("slabs (z ranges), mean level t1n t1c t2w t2f and share > 0.6 of t1c / t2f:"
          " real tumour-free / real with tumour / generated tumour-free / generated with tumour")
    for z0, z1 in ((8, 20), (20, 32), (32, 48), (48, 64), (64, 74)):
        parts = []
        for arr, hh, m in ((r, rh, rfree), (r, rh, ~rfree), (g, gh, free), (g, gh, ~free)):
            lv = np.nanmean(arr[m][:, :, z0:z1], axis=(0, 2)); sh = np.nanmean(hh[m][:, :, z0:z1], axis=(0, 2))
            parts.append(" ".join(f"{v:+.2f}" for v in lv) + f" [{sh[1]:.3f} {sh[3]:.3f}]")
        print(f"z {z0}-{z1}: " + " | ".join(parts))
    print(f"real held-out {len(r)}, generated {len(g)} ({gen}); brain outside the tumour label dilated 3 voxels")
    print("z  area(real,gen) | mean level real/gen per modality (t1n t1c t2w t2f) | share > 0.6 real/gen t1c t2f")
    for z in range(r.shape[-1]):
        if np.nanmedian(ra[:, z]) < 200:
            continue
        lv = " ".join(f"{np.nanmean(r[:, c, z]):+.2f}/{np.nanmean(g[:, c, z]):+.2f}" for c in range(4))
        hv = " ".join(f"{np.nanmean(rh[:, c, z]):.3f}/{np.nanmean(gh[:, c, z]):.3f}" for c in (1, 3))
        print(f"{z:2d} {np.median(ra[:, z]):5.0f} {np.median(ga[:, z]):5.0f} | {lv} | {hv}")


main()
