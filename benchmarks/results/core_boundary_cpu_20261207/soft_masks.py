"""Session 62: the shipped model's mask channels before thresholding. Generates N cases on the CPU (seeds 0..N-1,
the shipped sampler) and keeps each case's continuous WT/TC/ET channels (decoded, clamped to [-1, 1]) where
generate thresholds them at 0. Saves /work/s62/core/soft_masks.npz. python soft_masks.py N (repository root)"""
import sys
import time

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
t = time.time()
for s in range(N):
    pipe([s])
    print(f"case {s} {time.time() - t:.0f} s", flush=True)
    np.savez_compressed(sys.argv[2], masks=np.stack(kept))  # after every case: a kill keeps the rest
