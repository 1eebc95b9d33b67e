"""Is the speckle the last step's? (issue 16, session 44; a throwaway) The models' own Heun 30 grid (shifted, its last
step an x0 estimate from t_29 = shift(1/30)) against the same grid with that last step split into a tail of smaller
steps, the same seeds (as `medidiff generate --seed 0`, case i = seed i); background scores of the decoded case
(quality_common.background_scores, its own head mask).

    python grid_tail.py --seeds 8 --out OUT NAME=MODEL_DIR ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import background_scores, head_mask  # noqa: E402

# fractions of the grid's last non-zero time
TAILS = {"heun30": [], "tail2": [0.25]}  # the 4 mm run also had "tail4": [0.5, 0.25, 0.1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    from medidiff.generation import DiffusionPipeline, image_space_clamp
    from medidiff.samplers.flow import sample_heun
    from medidiff.samplers import generators_from_seeds
    from medidiff.utils.tensor import randn_per_sample

    torch.set_grad_enabled(False)
    result = {}
    for spec in args.models:
        name, model = spec.split("=")
        pipe = DiffusionPipeline.from_pretrained(model)
        m = len(pipe.cfg.data.modalities)
        c, *spatial = pipe.image_shape
        latent = pipe.codec.latent_shape((c, *spatial))
        base = pipe.objective.timesteps(pipe.cfg.sampler.num_steps, shape=latent[1:]).tolist()
        den = pipe.objective.denoiser(pipe.net)
        clamp = image_space_clamp(pipe.codec)
        result[name] = {"t_last": base[-2]}
        plain: dict[int, np.ndarray] = {}
        for tail_name, tail in TAILS.items():
            grid = base[:-1] + [f * base[-2] for f in tail] + [0.0]
            scores = []
            for seed in range(args.seeds):
                x = randn_per_sample((1, *latent), generators_from_seeds([seed]))
                z = sample_heun(den, x, grid, x0_transform=clamp)
                dec = pipe.codec.decode(z)[0].clamp(-1, 1).numpy()
                img = (dec[:m] + 1) / 2
                sc = background_scores(img)
                head = head_mask(img)
                # WT voxels (the first label channel > 0, as generate's labels) and, against the plain grid's
                # case of the same seed, the RMS change inside the head (what the tail does to the brain)
                sc["wt_voxels"] = float((dec[m] > 0).sum()) if dec.shape[0] > m else float("nan")
                if tail_name == "heun30":
                    plain[seed] = img
                sc["change_in_head"] = float(np.sqrt(((img - plain[seed])[:, head] ** 2).mean()))
                scores.append(sc)
            result[name][tail_name] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
            r = result[name][tail_name]
            print(name, tail_name, f"rms {r['background_rms']:.4f} speckle {r['speckle']:.4f} wt {r['wt_voxels']:.0f} change {r['change_in_head']:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grid_tail.json").write_text(json.dumps({"seeds": args.seeds, "tails": TAILS, "rows": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
