"""Where does the shipped model's bright t1c in tumour-free brains come from (../tumour_free_cpu_20261206/: 3-5x the
real share of t1c above 0.6 in the lower slabs)? Real held-out cases of the 2 mm anatomy set (tumour-free ones and
ones with a tumour) are encoded, noised to flow time t (one noise draw a case, the same at every t) and the model's
x0 estimate decoded, as ../x0_spread_cpu_20261205/ did for the levels. Per case, t and slab of z: t1c's and t2f's
mean level and share above 0.6 over the true case's brain outside its tumour label (dilated 3 voxels), in the
estimate beside the truth. If the estimate of a real tumour-free case is already brighter where the samples are,
the net's conditional mean carries it; if not, it arises along the sampling path.

    python x0_bright.py --data ROOT --manifest MANIFEST --cases N --out DIR > x0_bright.txt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202"))
from denoise_curve import model_and_held_out  # noqa: E402  the same model loading and held-out fold

from medidiff.data.brain import estimated_brain_mask  # noqa: E402

TIMES = [0.9, 0.7, 0.5, 0.3, 0.1]
# slabs of z as fractions of the grid's depth: (8, 32), (32, 48), (48, 74) on the 2 mm grid's 80, (4, 16), (16, 24),
# (24, 37) on the 4 mm proxy's 40
SLAB_FRACTIONS = [(0.1, 0.4), (0.4, 0.6), (0.6, 0.925)]


def slabs(depth: int) -> list[tuple[int, int]]:
    return [(int(round(a * depth)), int(round(b * depth))) for a, b in SLAB_FRACTIONS]


def slab_stats(img: np.ndarray, region: np.ndarray) -> list[list[float]]:
    """[slab][t1c level, t1c share > 0.6, t2f level, t2f share > 0.6] over ``region`` (img: (4, X, Y, Z))."""
    rows = []
    for z0, z1 in slabs(img.shape[-1]):
        m = region[:, :, z0:z1]
        row = []
        for c in (1, 3):
            v = img[c, :, :, z0:z1][m]
            row += [float(v.mean()), float((v > 0.6).mean())]
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="anatomy-2mm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cases", type=int, default=8, help="cases of each kind (tumour-free, with a tumour)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)

    from medidiff.data.dataset import collate_cases
    from medidiff.training.diffusion import model_input
    from medidiff.utils.tensor import batch_time

    pipe, cfg, held = model_and_held_out(args.model, args.data, args.manifest, args.out / "run")
    codec, den = pipe.codec, pipe.objective.denoiser(pipe.net)
    m = len(cfg.data.modalities)
    assert list(cfg.data.modalities) == ["t1n", "t1c", "t2w", "t2f"], cfg.data.modalities
    picked = {"tumour-free": [], "with a tumour": []}
    res: dict[str, list] = {"tumour-free": [], "with a tumour": []}
    t0 = time.perf_counter()
    for i in range(len(held)):
        if all(len(v) >= args.cases for v in picked.values()):
            break
        x, _ = model_input(collate_cases([held[i]]), cfg)  # (1, 7, X, Y, Z) in [-1, 1]: images, then WT/TC/ET
        depth = int(x.shape[-1])
        wt = (x[0, m] > 0).numpy()
        kind = "with a tumour" if wt.any() else "tumour-free"
        if len(picked[kind]) >= args.cases:
            continue
        picked[kind].append(i)
        img = x[0, :m].float().numpy()
        region = estimated_brain_mask(img) & ~ndimage.binary_dilation(wt, iterations=3)
        z0 = codec.encode(x)
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))
        case = {"truth": slab_stats(img, region), "estimate": {}}
        for t in TIMES:
            zt = (1 - t) * z0 + t * eps
            xhat = codec.decode(den(zt, batch_time(t, zt), {}))[0, :m].float().clamp(-1, 1).numpy()
            case["estimate"][str(t)] = slab_stats(xhat, region)
        res[kind].append(case)
        print(f"case {i} ({kind}) done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "x0_bright.json").write_text(json.dumps({"times": TIMES, "slabs": slabs(depth), "held_out_index": picked,
                                                         "cases": res}, indent=1))
    print("mean over cases; per slab (z): t1c level / t1c share > 0.6 / t2f level / t2f share > 0.6")
    for kind, cases in res.items():
        truth = np.mean([c["truth"] for c in cases], 0)
        print(f"{kind} ({len(cases)} real held-out cases)")
        for k, (za, zb) in enumerate(slabs(depth)):
            line = f"  z {za}-{zb}: truth {truth[k, 0]:+.3f} {truth[k, 1]:.3f} {truth[k, 2]:+.3f} {truth[k, 3]:.3f}"
            for t in TIMES:
                e = np.mean([c["estimate"][str(t)] for c in cases], 0)
                line += f" | t={t}: {e[k, 0]:+.3f} {e[k, 1]:.3f} {e[k, 2]:+.3f} {e[k, 3]:.3f}"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
