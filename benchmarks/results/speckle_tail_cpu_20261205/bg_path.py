"""Where along the sampling path does the background speckle appear? (issue 16, session 44; a throwaway)

Each model samples the same seeds with its own sampler (as `medidiff generate`); every x0 estimate the sampler
takes (x0_transform's input, before the image-space clamp) is decoded and scored outside the final case's head
(quality_common.head_mask of the final images): RMS and the share > 0.05 on the [0, 1] scale.

    python bg_path.py --seeds 0 1 2 3 --out OUT NAME=MODEL_DIR ...
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import head_mask  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    from medidiff.generation import DiffusionPipeline, image_space_clamp
    from medidiff.samplers import sample

    torch.set_grad_enabled(False)
    result = {}
    for spec in args.models:
        name, model = spec.split("=")
        pipe = DiffusionPipeline.from_pretrained(model)
        m = len(pipe.cfg.data.modalities)
        clamp = image_space_clamp(pipe.codec)
        per_seed = []
        for seed in args.seeds:
            seen: list[np.ndarray] = []

            def record(z: torch.Tensor) -> torch.Tensor:
                seen.append(pipe.codec.decode(z)[0, :m].clamp(-1, 1).numpy())
                return clamp(z) if pipe.cfg.sampler.clip_x0 else z

            c, *spatial = pipe.image_shape
            latent = pipe.codec.latent_shape((c, *spatial))
            sampler = pipe.cfg.sampler
            z = sample(pipe.objective, pipe.net, (1, *latent), config=replace(sampler, clip_x0=False), seeds=[seed],
                       x0_transform=record)
            final = pipe.codec.decode(z)[0, :m].clamp(-1, 1).numpy()
            outside = ~head_mask((final + 1) / 2)
            def score(a: np.ndarray) -> tuple[float, float]:
                o = ((a + 1) / 2)[:, outside]
                return float(np.sqrt((o**2).mean())), float((o > 0.05).mean())
            per_seed.append({"path": [score(a) for a in seen], "final": score(final)})
        n = len(per_seed[0]["path"])
        result[name] = {"calls": n, "path_rms": [float(np.mean([s["path"][k][0] for s in per_seed])) for k in range(n)],
                        "path_speckle": [float(np.mean([s["path"][k][1] for s in per_seed])) for k in range(n)],
                        "final_rms": float(np.mean([s["final"][0] for s in per_seed])),
                        "final_speckle": float(np.mean([s["final"][1] for s in per_seed]))}
        r = result[name]
        print(name, f"final {r['final_rms']:.4f}/{r['final_speckle']:.4f}; x0 rms along the path:",
              " ".join(f"{v:.4f}" for v in r["path_rms"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bg_path.json").write_text(json.dumps({"seeds": args.seeds, "rows": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
