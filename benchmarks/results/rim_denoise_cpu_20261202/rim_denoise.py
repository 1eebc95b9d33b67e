"""Does the shipped model's denoiser draw the dark shell at the brain's surface, or does sampling?
(issue 16, session 21)

The generated brains read too much CSF, nearly all of it in their outer two voxel layers, where they are
darker than real in T1 and brighter in T2 (../csf_where_cpu_20261202/). Here real held-out cases are
noised to flow time t (x_t = (1 - t) x0 + t eps, one noise draw per case, the same at every t), the
model's x0 estimate is decoded, and the mean intensity u in [0, 1] is read per modality at each depth of
the case's TRUE brain (tissue map > 0; depth 1 = the outermost layer, taxicab) and just outside it
(depth -1, -2: background next to the brain, 0 in the data), against the truth at the same voxels.

If the estimate at small t (the edge well determined by x_t) keeps the real rim, the denoiser is
unbiased there and the shell comes from the sampling path; if it darkens the rim already at small t,
the net is biased at the edge and a training-side lever (a loss weight on the edge band) is the test.

    python rim_denoise.py --data DATA --manifest MANIFEST --cases 8 --out OUT [--model anatomy-2mm]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

TIMES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
DEPTHS = [-2, -1, 1, 2, 3, 4]


def depth_map(brain: np.ndarray) -> np.ndarray:
    """Taxicab depth inside the brain (1 = outermost layer), minus the distance outside (-1 = touching)."""
    inside = ndimage.distance_transform_cdt(brain, metric="taxicab")
    outside = ndimage.distance_transform_cdt(~brain, metric="taxicab")
    return np.where(brain, inside, -outside)


def by_depth(u: np.ndarray, depth: np.ndarray) -> list[list[float]]:
    """(len(DEPTHS), C) mean of u (C, X, Y, Z) at each depth."""
    return [u[:, depth == d].mean(1).tolist() for d in DEPTHS]


def args_model_and_tissue(doc: str | None = None):
    """The command line (--model, --data, --manifest, --cases, --out), the model, its config, the held-out
    fold's cases and their tissue maps (brain = tissue > 0): shared with rim_resample.py."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--model", default="anatomy-2mm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from medidiff.data.transforms import build_transforms
    from medidiff.eval import data as evdata
    from medidiff.eval import tissue as ts

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202"))
    from denoise_curve import model_and_held_out  # the same model loading and held-out fold

    pipe, cfg, held = model_and_held_out(args.model, args.data, args.manifest, args.out / "run")
    # the same held-out fold through the evaluation's loader, for the tissue maps (brain = tissue > 0)
    _, held_items, _ = evdata.real_items(args.manifest, args.data, cfg.data.fold)
    d = evdata.eval_data_config(cfg.data)
    tissue = ts.load_tissue_maps(ts.tissue_items(held_items),
                                 build_transforms(replace(d, label_mode="labels"), train=False, label_map={}))
    return args, pipe, cfg, held, tissue


def main() -> int:
    from medidiff.data.dataset import collate_cases
    from medidiff.training.diffusion import model_input
    from medidiff.utils.tensor import batch_time

    args, pipe, cfg, held, tissue = args_model_and_tissue(__doc__)
    codec, obj = pipe.codec, pipe.objective
    den = obj.denoiser(pipe.net)
    mods = list(cfg.data.modalities)
    m = len(mods)

    truth_rows, est_rows = [], {t: [] for t in TIMES}
    t0 = time.perf_counter()
    for i in range(min(args.cases, len(held))):
        batch = collate_cases([held[i]])
        x, _ = model_input(batch, cfg)  # (1, 7, D, H, W) in [-1, 1]: images, then WT/TC/ET
        assert x.shape[-3:] == tissue.shape[-3:], (x.shape, tissue.shape)
        depth = depth_map(tissue[i].numpy() > 0)
        u = ((x[0, :m].double() + 1) / 2).numpy()
        # the images must be the tissue map's case: zero outside the brain, non-zero inside
        assert u[:, depth < 0].max() < 1e-3 and (u[:, depth > 2] > 0).mean() > 0.9, "images and tissue maps differ"
        truth_rows.append(by_depth(u, depth))
        z0 = codec.encode(x)
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))
        for t in TIMES:
            zt = (1 - t) * z0 + t * eps
            xhat = codec.decode(den(zt, batch_time(t, zt), {}))
            uhat = ((xhat[0, :m].double().clamp(-1, 1) + 1) / 2).numpy()
            est_rows[t].append(by_depth(uhat, depth))
        print(f"case {i} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    truth = np.mean(truth_rows, 0)  # (depths, C)
    est = {t: np.mean(v, 0) for t, v in est_rows.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rim_denoise.json").write_text(json.dumps({
        "model": args.model, "cases": len(truth_rows), "times": TIMES, "depths": DEPTHS, "modalities": mods,
        "truth": truth.tolist(), "estimate": {str(t): e.tolist() for t, e in est.items()}}, indent=1))
    lines = []
    for k, mod in enumerate(mods):
        lines += [f"\n{mod}: mean u by depth (-2, -1 outside; 1 = the brain's outer layer)",
                  "| set | " + " | ".join(str(dd) for dd in DEPTHS) + " |", "|" + " --- |" * (len(DEPTHS) + 1),
                  "| real | " + " | ".join(f"{v:.3f}" for v in truth[:, k]) + " |"]
        lines += [f"| x0 estimate, t = {t} | " + " | ".join(f"{v:.3f}" for v in est[t][:, k]) + " |" for t in TIMES]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
