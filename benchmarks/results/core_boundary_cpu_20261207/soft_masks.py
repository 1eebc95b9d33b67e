"""Session 62: the shipped model's mask channels before thresholding. Generates N cases on the CPU (case seeds
0..N-1) and keeps each case's continuous WT/TC/ET channels (decoded, clamped to [-1, 1]) where generate thresholds
them at 0, after every case (a kill keeps the rest). The shipped sampler (Heun 30) unless SAMPLER STEPS [TAIL] are
given. python soft_masks.py N OUT.npz [SAMPLER STEPS [TAIL]] (repository root; about 35 s a case at Heun 30 on
2 cores)"""
import sys
import time
from dataclasses import replace

import numpy as np
import torch

import medidiff.generation as gen

N = int(sys.argv[1]) if len(sys.argv) > 1 else 8
torch.set_num_threads(2)
kept = []
orig = gen.regions_to_labels


def keep(regions):
    kept.append(np.asarray(regions, dtype=np.float32).copy())
    return orig(regions)


gen.regions_to_labels = keep
pipe = gen.DiffusionPipeline.from_pretrained("medidiff/pretrained/anatomy_2mm")
sampler = pipe.cfg.sampler
if len(sys.argv) > 4:
    sampler = replace(sampler, name=sys.argv[3], num_steps=int(sys.argv[4]),
                      tail_steps=int(sys.argv[5]) if len(sys.argv) > 5 else 0)
print(f"sampler {sampler.name} {sampler.num_steps} steps, tail {sampler.tail_steps}", flush=True)
t = time.time()
for s in range(N):
    pipe([s], sampler=sampler)
    print(f"case {s} {time.time() - t:.0f} s", flush=True)
    np.savez_compressed(sys.argv[2], masks=np.stack(kept))
