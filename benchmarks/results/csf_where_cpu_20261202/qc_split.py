"""The tissue QC's new split (csf_share_surface / csf_share_deep, medidiff.eval.tissue.csf_by_depth) of the
same cases as where.py, against the 16 held-out real cases through the same segmenter. (Was: Where is the generated brains' excess CSF? The saved tissue segmenter (session 17's, trained on the
1536-case set's training folds) on 16 local held-out real cases (with their true tissue maps) and on 8
CPU-generated cases of each model; CSF share of the brain split by depth (voxels from the tissue mask's
edge: 1-2 = rim, 3-5, 6+ = deep, where the ventricles are)."""
import sys, json
from dataclasses import replace
import numpy as np, torch
from scipy import ndimage
sys.path.insert(0, '/work/main')
from medidiff.config import load_config
from medidiff.eval import data as evdata, tissue as ts
from medidiff.eval.segmentation import load_segmenter
from medidiff.data.transforms import build_transforms

cfg = load_config('/work/main/configs/anatomy_2mm.yaml')
d = evdata.eval_data_config(replace(cfg.data, manifest='/work/anat/manifest.json', root='/work/anat/data', cache='none', num_workers=0))
tr, he, _ = evdata.real_items('/work/anat/manifest.json', '/work/anat/data', 0)
held_items = evdata.seeded_subset(he, 16, 1)
held = evdata.load_cases('held', held_items, build_transforms(d, train=False), with_label=False, progress=False).images
truth = ts.load_tissue_maps(ts.tissue_items(held_items), build_transforms(replace(d, label_mode="labels"), train=False, label_map={}))
model, _ = load_segmenter('/work/main/.nets/tissue_net', kind=ts.TISSUE_NET_KIND, what="tissue segmenter", option="--tissue-net", expect={})
model.eval()

real = ts.csf_by_depth(ts.predict_tissue(model, held))
out = {}
for m in sys.argv[1:]:
    items = evdata.synthetic_items(f'/work/s20/gen/{m}', d.modalities)
    syn = evdata.load_cases(m, items, evdata.synthetic_transforms(d, background=0.0, with_label=False), with_label=False, progress=False).images
    r = ts.compare_to_real(ts.csf_by_depth(ts.predict_tissue(model, syn)), real)
    out[m] = r
    print(m, {k: (round(v["synthetic_mean"], 3), round(v["real_mean"], 3), round(v["real_std"], 3), round(v["z"], 1), v["pass"]) for k, v in r["metrics"].items()})
json.dump(out, open('qc_split.json', 'w'), indent=2)
