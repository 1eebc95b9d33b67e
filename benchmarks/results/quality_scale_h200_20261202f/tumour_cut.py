"""Probe: do the brain-mask variant's missing tumours come from the cut (split_generated) or the model?
Generates seeds with the fetched model, records each case's WT voxels before and after the cut
(the region channels as decoded, > 0, and the generated brain mask's voxels).

    python tumour_cut.py MODEL_DIR 0,1,2,3 > tumour_cut_seed0.jsonl
"""
import json
import sys
import time

import medidiff.generation as g
from medidiff.training import diffusion as d

model, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
rows = []
orig = d.split_generated
def probe(x, cfg):
    m = len(cfg.data.modalities)
    before = int((x[m] > 0).sum())  # WT region channel before the cut
    brain = x[-1] > 0
    images, regions = orig(x, cfg)
    after = int((regions[0] > 0).sum())
    outside = int(((x[m] > 0) & ~brain).sum())
    rows.append({"wt_before": before, "wt_after": after, "wt_outside_raw_mask": outside,
                 "brain_voxels": int(brain.sum()), "tc_before": int((x[m+1] > 0).sum())})
    return images, regions
g.split_generated = probe
pipe = g.DiffusionPipeline.from_pretrained(model)
for s in seeds:
    t = time.time()
    pipe([s])
    rows[-1]["seed"] = s
    print(json.dumps(rows[-1]), f"{time.time()-t:.0f}s", flush=True)
