"""Where is the generated brains' excess CSF? The saved tissue segmenter (session 17's, trained on the
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

def profile(images, maps):
    """Mean intensity u per modality at depth 1, 2, 3, 4 voxels inside the brain (tissue map > 0)."""
    u = ((images.double() + 1) / 2).numpy()
    out = np.zeros((4, u.shape[1]))
    for i, m in enumerate(maps.numpy()):
        depth = ndimage.distance_transform_cdt(m > 0, metric='taxicab')
        for k in range(4):
            out[k] += u[i][:, depth == k + 1].mean(1)
    return (out / len(u)).round(3).tolist()

def by_depth(maps):
    rows = []
    for m in maps.numpy():
        brain = m > 0
        depth = ndimage.distance_transform_cdt(brain, metric='taxicab')
        r = {"CSF_fraction": float((m == 1).sum() / max(brain.sum(), 1))}
        for name, lo, hi in (("rim_1_2", 1, 2), ("mid_3_5", 3, 5), ("deep_6plus", 6, 10**6)):
            sel = (depth >= lo) & (depth <= hi)
            r[f"share_of_brain_{name}"] = float(sel.sum() / max(brain.sum(), 1))
            r[f"csf_in_{name}"] = float((m[sel] == 1).mean()) if sel.any() else float("nan")
            r[f"csf_voxels_{name}_share_of_all_csf"] = float((m[sel] == 1).sum() / max((m == 1).sum(), 1))
        rows.append(r)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

pred_held = ts.predict_tissue(model, held)
real_split = ts.csf_by_depth(pred_held)  # the tissue QC's split (medidiff.eval.tissue.csf_by_depth), real side
qc_split = {}
out = {"real held-out, true maps": by_depth(truth),
       "real held-out, segmenter": by_depth(pred_held)}
profiles = {"real held-out (segmenter's brain)": profile(held, pred_held)}
for m in sys.argv[1:]:
    items = evdata.synthetic_items(f'/work/s20/gen/{m}', d.modalities)
    syn = evdata.load_cases(m, items, evdata.synthetic_transforms(d, background=0.0, with_label=False), with_label=False, progress=False).images
    pred = ts.predict_tissue(model, syn)
    out[m] = by_depth(pred)
    profiles[m] = profile(syn, pred)
    qc_split[m] = ts.compare_to_real(ts.csf_by_depth(pred), real_split)
json.dump({"csf_by_depth": out, "intensity_by_depth_1_to_4_t1n_t1c_t2w_t2f": profiles,
           "tissue_qc_csf_split": qc_split}, open('where.json', 'w'), indent=2)
for m, r in qc_split.items():
    print(m, {k: (round(v["synthetic_mean"], 3), round(v["real_mean"], 3), round(v["real_std"], 3), round(v["z"], 1))
              for k, v in r["metrics"].items()})
print("mean u at depth 1..4 (rows), modalities t1n t1c t2w t2f (columns):")
for k, v in profiles.items():
    print(k, v)
keys = list(next(iter(out.values())))
print("| set | " + " | ".join(keys) + " |")
for k, v in out.items():
    print(f"| {k} | " + " | ".join(f"{v[x]:.3f}" for x in keys) + " |")
