import time, cProfile, pstats, sys
from pathlib import Path
import torch
from medidiff.config import load_config
from medidiff.data.prepare import write_synthetic_set
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.cascade.sr_task import train_window_steps
from medidiff.training.diffusion import build_codec_for
from medidiff.training.diffusion import build_datasets
W = Path("/work/srprof/w")
if not (W / "manifest.json").is_file():
    t = time.time(); write_synthetic_set("phantom", W / "data", 4, shape=[240, 240, 160], seed=0, tumour_fraction=1.0)
    write_manifest(build_brats_manifest(W / "data", num_folds=2, seed=0), W / "manifest.json"); print("data", time.time() - t)
cache = sys.argv[1] if len(sys.argv) > 1 else "memory"
cfg = load_config("/work/main/configs/cascade_sr.yaml", [f"data.manifest={W/'manifest.json'}", f"data.root={W/'data'}",
      f"data.cache={cache}", f"data.cache_dir={W/'cache'}", "data.fold=null", f"output_dir={W/'runs'}", "train.device=cpu"])
codec = build_codec_for(cfg)
train_set, _ = build_datasets(cfg, W / "runs" / "x", train_random=train_window_steps(cfg, codec))
for i in range(2): train_set[i % len(train_set)]
t = time.perf_counter(); n = 20
pr = cProfile.Profile(); pr.enable()
for i in range(n): it = train_set[i % len(train_set)]
pr.disable()
print(cache, "ms per item", (time.perf_counter() - t) / n * 1e3, {k: (tuple(v.shape), v.dtype) for k, v in it.items() if hasattr(v, "shape")})
pstats.Stats(pr).sort_stats("cumtime").print_stats(18)
from torch.utils.data import DataLoader
from medidiff.data.dataset import collate_cases
for nw in (0, 2):
    dl = DataLoader(train_set, batch_size=2, num_workers=nw, collate_fn=collate_cases, persistent_workers=nw > 0, shuffle=True)
    [b for b in dl]
    t = time.perf_counter(); nb = 0
    for _ in range(10):
        for b in dl: nb += 1
    print("workers", nw, "ms per batch", (time.perf_counter() - t) / nb * 1e3, nb)
