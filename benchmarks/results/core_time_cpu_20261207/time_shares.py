"""Where the shipped recipe's training times fall, beside the sampler's first steps: the share of training
samples above t = 0.85 / 0.9 / 0.95 / 0.978 (the end of Heun 30's first step) and below 0.1, drawn by the
objective's own sample_time on the 40x48x40 latent, for the shipped config, the halved shift (sessions 61-62)
and quality_scale's two high-noise arms. python time_shares.py (repository root)"""
import dataclasses

import torch

from medidiff.objectives import build_objective
from medidiff.generation import read_model_config
from medidiff.training.diffusion import build_codec_for

cfg, _ = read_model_config("medidiff/pretrained/anatomy_2mm", "medidiff.diffusion")
names = build_codec_for(cfg).channel_names
arms = {"shipped (logit-normal 0, 1; shift 1.53)": {},
        "halved shift (shift_base_voxels 131072)": {"shift_base_voxels": 131072},
        "logit_mean 0.5": {"logit_mean": 0.5}, "logit_std 1.5": {"logit_std": 1.5}}
g = torch.Generator().manual_seed(0)
print("| arm | shift | > 0.85 | > 0.9 | > 0.95 | > 0.978 | < 0.1 |")
print("|---|---|---|---|---|---|---|")
for name, change in arms.items():
    obj = build_objective(dataclasses.replace(cfg.objective, **change), names)
    t = obj.sample_time(2_000_000, shape=(40, 48, 40), generator=g)
    cells = [f"{100 * (t > a).float().mean():.2f} %" for a in (0.85, 0.9, 0.95, 0.978)]
    print(f"| {name} | {obj.shift((40, 48, 40)):.2f} | " + " | ".join(cells) + f" | {100 * (t < 0.1).float().mean():.2f} % |")
