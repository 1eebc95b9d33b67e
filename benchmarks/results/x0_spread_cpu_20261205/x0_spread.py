"""Does the shipped net pull a case's global properties toward the typical case when the noisy input still
carries them? (issue 16's under-dispersion; CPU, 2026-12-05, session 41). Real held-out cases of the 2 mm
anatomy set are encoded, noised to flow time t (x_t = (1 - t) z0 + t eps, one noise draw per case, the same at
every t) and the model's x0 estimate decoded; each estimate's brain size and per-modality brain medians
(medidiff.eval.realism.case_globals, the realism checks' own estimators) are regressed on the true case's.
The estimate is E[x0 | x_t]: at high noise it should sit near the mean (slope near 0); where x_t still shows a
case's global properties (low noise: the brain's extent is visible through noise of 0.1-0.3 of the range) a
net that keeps them gives slope ~1. A slope well below 1 at low noise is the net drawing every case toward the
typical one, which the ODE then carries into the samples' narrow spread.

    python x0_spread.py --data anat --manifest manifest512.json --cases 32 --out DIR [--model M] [--times T ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202"))
from denoise_curve import model_and_held_out  # noqa: E402  the same model loading and held-out fold

from medidiff.eval.realism import brain_masks, case_globals, spread_property_names  # noqa: E402

TIMES = [0.99, 0.97, 0.95, 0.9, 0.7, 0.5, 0.3, 0.1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="anatomy-2mm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cases", type=int, default=32)
    ap.add_argument("--times", type=float, nargs="+", default=TIMES)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)

    from medidiff.data.dataset import collate_cases
    from medidiff.training.diffusion import model_input
    from medidiff.utils.tensor import batch_time

    pipe, cfg, held = model_and_held_out(args.model, args.data, args.manifest, args.out / "run")
    codec, obj = pipe.codec, pipe.objective
    den = obj.denoiser(pipe.net)
    mods = list(cfg.data.modalities)
    m = len(mods)
    names = spread_property_names(mods)
    times = args.times
    truth, est = [], {t: [] for t in times}
    t0 = time.perf_counter()
    for i in range(min(args.cases, len(held))):
        x, _ = model_input(collate_cases([held[i]]), cfg)  # (1, 7, D, H, W) in [-1, 1]: images, then WT/TC/ET
        img = x[:, :m].float()
        truth.append(case_globals(img, brain_masks(img))[0])
        z0 = codec.encode(x)
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))
        for t in times:
            zt = (1 - t) * z0 + t * eps
            xhat = codec.decode(den(zt, batch_time(t, zt), {}))[:, :m].float().clamp(-1, 1)
            est[t].append(case_globals(xhat, brain_masks(xhat))[0])
        print(f"case {i} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    y = np.array(truth)
    out = {"model": args.model, "cases": len(y), "times": times, "properties": names, "per_time": {}}
    for t in times:
        e = np.array(est[t])
        rows = {}
        for k, name in enumerate(names):
            ok = np.isfinite(e[:, k]) & np.isfinite(y[:, k])
            a, b = y[ok, k], e[ok, k]
            slope = float(np.polyfit(a, b, 1)[0]) if ok.sum() >= 3 and a.std() > 0 else float("nan")
            rows[name] = {"slope": slope, "corr": float(np.corrcoef(a, b)[0, 1]) if ok.sum() >= 3 else float("nan"),
                          "sd_ratio": float(b.std(ddof=1) / a.std(ddof=1)) if ok.sum() >= 3 else float("nan"),
                          "mean_difference": float((b - a).mean()) if ok.any() else float("nan"),
                          # the estimate's own error beside the truth's spread: an error of one size in every
                          # modality reads as a lost level where the cases' levels vary little (t1n, t2w)
                          "rms_error": float(np.sqrt(((b - a) ** 2).mean())) if ok.any() else float("nan"),
                          "truth_sd": float(a.std(ddof=1)) if ok.sum() >= 2 else float("nan"),
                          "cases": int(ok.sum())}
        out["per_time"][str(t)] = rows
        print(f"t={t}: " + ", ".join(f"{n} slope {r['slope']:.2f} r {r['corr']:.2f} sd {r['sd_ratio']:.2f}"
                                     for n, r in rows.items()), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "x0_spread.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
