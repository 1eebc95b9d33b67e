"""Where along the sampling path does the dark shell form? (issue 16, session 22)

rim_denoise.py showed that a model trained with more low-noise times (logit std 1.5) keeps the brain's
outermost layer in its one-step x0 estimate of a nearly clean real case, yet its generated brains keep the
CSF-like shell. Here each real held-out case is noised to t0 (the same noise as rim_denoise.py), and the
sampler runs from there to 0 along the model's own grid (Heun, the shipped 30-step grid's points below t0,
the image-space clamp of `medidiff generate`): t0 = 0.05 is nearly rim_denoise's last estimate, t0 = 0.9 nearly
a fresh sample of the same anatomy. Mean u per depth of the case's TRUE brain (rim_denoise's bands), and of
the output's own brain (the realism checks' mask estimator, as sampler_rim.py reads generated cases).
If the layer stays real from small t0 and darkens from some t0 up, the shell is made at that noise level.

    python rim_resample.py --model MODEL --data DATA --manifest MANIFEST --cases 8 --out OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rim_denoise import DEPTHS, args_model_and_tissue, by_depth, depth_map  # noqa: E402  the same bands

STARTS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]


def main() -> int:
    from medidiff.data.dataset import collate_cases
    from medidiff.eval.realism import brain_masks
    from medidiff.generation import image_space_clamp
    from medidiff.samplers.flow import sample_heun
    from medidiff.training.diffusion import model_input

    args, pipe, cfg, held, tissue = args_model_and_tissue(__doc__)
    codec, obj = pipe.codec, pipe.objective
    den = obj.denoiser(pipe.net)
    clamp = image_space_clamp(codec)
    m = len(cfg.data.modalities)

    truth_rows: list = []  # the real case at its true brain's depths, and at its own estimated brain's
    truth_own_rows: list = []
    true_rows: dict[float, list] = {t: [] for t in STARTS}
    own_rows: dict[float, list] = {t: [] for t in STARTS}
    grid_used: dict[float, list[float]] = {}
    t_start = time.perf_counter()
    with torch.no_grad():
        for i in range(min(args.cases, len(held))):
            batch = collate_cases([held[i]])
            x, _ = model_input(batch, cfg)
            depth = depth_map(tissue[i].numpy() > 0)
            u_real = ((x[0, :m].double() + 1) / 2).numpy()
            truth_rows.append(by_depth(u_real, depth))
            truth_own_rows.append(by_depth(u_real, depth_map(brain_masks(x[:, :m])[0])))
            z0 = codec.encode(x)
            eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))  # rim_denoise's noise
            full = [float(t) for t in obj.timesteps(cfg.sampler.num_steps, shape=z0.shape[2:],
                                                    spacing=cfg.sampler.spacing)]
            for t0 in STARTS:
                grid = [t0] + [t for t in full if t < t0 - 1e-6]
                grid_used[t0] = grid
                z = sample_heun(den, (1 - t0) * z0 + t0 * eps, grid, x0_transform=clamp)
                xhat = codec.decode(z)[:, :m].clamp(-1, 1)
                u = ((xhat[0].double() + 1) / 2).numpy()
                true_rows[t0].append(by_depth(u, depth))
                own_rows[t0].append(by_depth(u, depth_map(brain_masks(xhat)[0])))
            print(f"case {i} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

    truth, truth_own = np.mean(truth_rows, 0), np.mean(truth_own_rows, 0)
    res = {"model": args.model, "cases": len(truth_rows), "starts": STARTS, "depths": DEPTHS,
           "modalities": list(cfg.data.modalities), "grids": {str(k): v for k, v in grid_used.items()},
           "truth_true_depth": truth.tolist(), "truth_own_depth": truth_own.tolist(),
           "true_depth": {str(t): np.mean(v, 0).tolist() for t, v in true_rows.items()},
           "own_depth": {str(t): np.mean(v, 0).tolist() for t, v in own_rows.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rim_resample.json").write_text(json.dumps(res, indent=1))
    lines = []
    for k, mod in enumerate(res["modalities"]):
        for key, real in (("true_depth", truth), ("own_depth", truth_own)):
            lines += [f"\n{mod}, depth of the {'true' if key == 'true_depth' else 'own (estimated)'} brain: mean u",
                      "| set | " + " | ".join(str(dd) for dd in DEPTHS) + " |", "|" + " --- |" * (len(DEPTHS) + 1),
                      "| real | " + " | ".join(f"{v:.3f}" for v in real[:, k]) + " |"]
            lines += [f"| sampled from t0 = {t} | " + " | ".join(f"{v:.3f}" for v in np.asarray(res[key][str(t)])[:, k])
                      + " |" for t in STARTS]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
