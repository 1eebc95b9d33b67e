"""Is the background speckle that grows with training steps made by the net's one-step x0 estimate, or along the
sampling path? (issue 16, session 44; a throwaway kept beside its results)

Held-out real cases through each model's own pipeline are encoded, noised to flow time t (one noise draw a case,
the same at every t and for every model) and denoised once; the x0 estimate is decoded and scored outside the
real case's head (quality_common.head_mask of the real images, dilated 2): RMS and the share of voxels > 0.05 on
the written [0, 1] scale, as quality_scale's background rows.

    python bg_curve.py --data ROOT --manifest M --cases 8 --out OUT NAME=MODEL_DIR ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202"))
from denoise_curve import model_and_held_out  # noqa: E402
from quality_common import head_mask  # noqa: E402

TIMES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    from medidiff.data.dataset import collate_cases
    from medidiff.training.diffusion import model_input
    from medidiff.utils.tensor import batch_time

    result = {}
    for spec in args.models:
        name, model = spec.split("=")
        pipe, cfg, held = model_and_held_out(model, args.data, args.manifest, args.out / "run")
        codec, den = pipe.codec, pipe.objective.denoiser(pipe.net)
        m = len(cfg.data.modalities)
        rows = {t: {"rms": [], "speckle": []} for t in TIMES}
        for i in range(min(args.cases, len(held))):
            x, _ = model_input(collate_cases([held[i]]), cfg)  # (1, M + 3, X, Y, Z) in [-1, 1]
            img = ((x[0, :m].numpy() + 1) / 2)
            outside = ~head_mask(img)
            z0 = codec.encode(x)
            eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))
            for t in TIMES:
                zt = (1 - t) * z0 + t * eps
                xhat = codec.decode(den(zt, batch_time(t, zt), {}))[0, :m].clamp(-1, 1).numpy()
                o = ((xhat + 1) / 2)[:, outside]
                rows[t]["rms"].append(float(np.sqrt((o**2).mean())))
                rows[t]["speckle"].append(float((o > 0.05).mean()))
        result[name] = {str(t): {k: float(np.mean(v)) for k, v in r.items()} for t, r in rows.items()}
        print(name, " ".join(f"t={t}: {result[name][str(t)]['rms']:.4f}/{result[name][str(t)]['speckle']:.4f}"
                             for t in TIMES), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bg_curve.json").write_text(json.dumps({"cases": args.cases, "times": TIMES, "rows": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
