"""Generate case seeds 0..N-1 from a model folder on the CPU (its shipped sampler) and write each case's core / rim
radius ratio (NCR / TC)^(1/3) and TC voxels. python gen_ratio.py MODEL_DIR N OUT.json (repository root)"""
import json
import sys
import time

import numpy as np
import torch

import medidiff.generation as gen

torch.set_num_threads(2)
pipe = gen.DiffusionPipeline.from_pretrained(sys.argv[1])
rows, t0 = [], time.time()
for s in range(int(sys.argv[2])):
    lab = pipe([s])[0].label
    tc = int(((lab == 1) | (lab == 3)).sum())
    rows.append({"seed": s, "tc": tc, "ratio": float(((lab == 1).sum() / tc) ** (1 / 3)) if tc else None})
    print(f"seed {s}: TC {tc}, ratio {rows[-1]['ratio']}  {time.time() - t0:.0f} s", flush=True)
    json.dump(rows, open(sys.argv[3], "w"), indent=1)
