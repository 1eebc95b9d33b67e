"""Cases the lr-2e-4 fine-tune drew without a TC: is the whole tumour gone or only its core? Case seeds given,
the shipped sampler; per case WT / TC / ET voxels. python wt_check.py MODEL_DIR OUT.json SEED... (repository root)"""
import json
import sys

import torch

import medidiff.generation as gen

torch.set_num_threads(2)
pipe = gen.DiffusionPipeline.from_pretrained(sys.argv[1])
rows = []
for s in map(int, sys.argv[3:]):
    lab = pipe([s])[0].label
    rows.append({"seed": s, "wt": int((lab > 0).sum()), "tc": int(((lab == 1) | (lab == 3)).sum()),
                 "et": int((lab == 3).sum())})
    print(rows[-1], flush=True)
    json.dump(rows, open(sys.argv[2], "w"), indent=1)
