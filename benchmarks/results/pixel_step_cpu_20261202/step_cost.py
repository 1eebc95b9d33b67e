"""One training step's network cost, wavelet recipe against its pixel-space variant (issue 16's equal-budget row):
forward + backward of each quality_scale variant's net at micro-batch 1 on its own latent grid, third of three
repeats. Run from the repository root: python benchmarks/results/pixel_step_cpu_20261202/step_cost.py"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
import quality_scale  # noqa: E402

from medidiff.config import load_config  # noqa: E402
from medidiff.nets import build_net  # noqa: E402
from medidiff.training.diffusion import build_codec_for, resolve_net_config  # noqa: E402

torch.set_num_threads(2)
p = dict(quality_scale.FULL, workers=1)
for v in ("x0_detail100_labels_lll100_skip005", "x0_pixel_labels100_skip005"):
    cfg = load_config(None, [*quality_scale.overrides(p, Path("/tmp/qs"), "cpu", False),
                             *quality_scale.ARMS[quality_scale.ARM], *quality_scale.VARIANTS[v]])
    codec = build_codec_for(cfg)
    net = build_net(resolve_net_config(cfg, codec))
    shape = codec.latent_shape((7, *cfg.data.roi))
    x, t = torch.randn(1, *shape), torch.full((1,), 500.0)
    for _ in range(3):
        t0 = time.perf_counter()
        net(x, t).float().pow(2).mean().backward()
        dt = time.perf_counter() - t0
    print(v, shape, sum(q.numel() for q in net.parameters()), f"{dt:.2f} s forward + backward at batch 1")
