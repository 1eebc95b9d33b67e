"""A/B: the anatomy recipe's training loader (as fit builds it) feeding a consumer that copies every
batch into preallocated host buffers (the pin thread's copy); batches/s and MB a batch."""
import json, sys, time
from pathlib import Path
import torch
from medidiff.config import load_config
from medidiff.training.diffusion import build_datasets, uses_labels
from medidiff.training import loop as L
from medidiff.training.sampler import ResumableSampler, SeededItems, StreamSampler
from medidiff.data.dataset import collate_cases
from torch.utils.data import DataLoader

manifest, root, cases, workers, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = load_config("configs/anatomy_2mm.yaml", [f"data.manifest={manifest}", f"data.root={root}", f"data.num_workers={workers}",
                                               "output_dir=/tmp/loader_ab_runs", "train.device=cpu"])
t0 = time.perf_counter()
train, _ = build_datasets(cfg, Path("/tmp/loader_ab_runs"), with_label=uses_labels(cfg))
from torch.utils.data import Subset
fill = time.perf_counter() - t0
mb = cfg.train.micro_batch
order = ResumableSampler(len(train), seed=0)
loader = DataLoader(SeededItems(train), batch_size=mb, sampler=StreamSampler(order, mb, 0, 0), collate_fn=collate_cases,
                    num_workers=workers, persistent_workers=workers > 0, pin_memory=False)
it = iter(loader)
b = next(it)
bufs = {k: torch.empty_like(v) for k, v in b.items() if torch.is_tensor(v)}
for _ in range(2):
    b = next(it)
t0 = time.perf_counter()
for _ in range(batches):
    b = next(it)
    for k, v in bufs.items():
        v.copy_(b[k])
wall = time.perf_counter() - t0
mib = sum(v.numel() * v.element_size() for v in bufs.values()) / 2**20
print(json.dumps({"cases": len(train), "cache_fill_s": round(fill, 1), "workers": workers, "micro_batch": mb,
                  "batches": batches, "batches_per_s": round(batches / wall, 2), "vol_per_s": round(batches * mb / wall, 1),
                  "mib_per_batch": round(mib, 1), "label_dtype": str(b["label"].dtype)}))
