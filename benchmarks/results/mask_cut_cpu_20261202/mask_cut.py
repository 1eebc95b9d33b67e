"""Would cutting the images to zero outside a brain mask (as skull stripping makes real data) remove the
generated brains' CSF shell? The evaluation's tissue segmenter (.nets/tissue_net, trained on the
1536-case set's training folds, session 23) on:
- 16 local held-out real cases: as they are; blurred (Gaussian sigma 0.8 voxel, which reads as excess CSF,
  ../csf_blur_cpu_20261201/); blurred and then cut at their true brain mask (tissue map > 0): the best a
  generated brain-mask channel could do for a soft edge;
- 8 CPU-generated cases of the shipped anatomy-2mm (Heun 30, seeds 0-7): as they are, and cut at their own
  mask, (mean intensity over the four modalities, in [0, 1]) > tau, holes filled, largest component, for
  several tau: how far up the edge's ramp a cut must sit to bring the shell to real, and what it costs in
  brain size; and cut at evaluate's own brain mask (medidiff.eval.realism.brain_masks). The same cuts of
  the real cases are the control: skull stripping must not change them.
Per set: CSF fraction, the CSF share of the outer two layers (tissue QC's csf_share_surface) and of depth 6+,
the brain's voxel count (segmenter's tissue > 0) against the real cases'.

    python mask_cut.py /work/s22/anat /work/s22/anat_manifest.json /work/s23/gen_shipped > out.txt   # -> mask_cut.json
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from medidiff.config import load_config
from medidiff.data.transforms import build_transforms
from medidiff.eval import data as evdata
from medidiff.eval import tissue as ts
from medidiff.eval.realism import brain_masks
from medidiff.eval.segmentation import load_segmenter

REPO = Path(__file__).resolve().parents[3]
data_root, manifest, generated = sys.argv[1:4]
torch.set_num_threads(2)
cfg = load_config(REPO / "configs" / "anatomy_2mm.yaml")
d = evdata.eval_data_config(replace(cfg.data, manifest=manifest, root=data_root, cache="none", num_workers=0))
_, held_out, _ = evdata.real_items(manifest, data_root, 0)
items = evdata.seeded_subset(held_out, 16, 1)
real = evdata.load_cases("held", items, build_transforms(d, train=False), with_label=False, progress=False).images
truth = ts.load_tissue_maps(ts.tissue_items(items), build_transforms(replace(d, label_mode="labels"), train=False,
                                                                     label_map={}))
syn_items = evdata.synthetic_items(generated, d.modalities)
syn = evdata.load_cases("gen", syn_items, evdata.synthetic_transforms(d, background=0.0, with_label=False),
                        with_label=False, progress=False).images
model, _ = load_segmenter(REPO / ".nets" / "tissue_net", kind=ts.TISSUE_NET_KIND, what="tissue segmenter",
                          option="--tissue-net", expect={})
model.eval()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    a = x.numpy().copy()
    for i in range(len(a)):
        for c in range(a.shape[1]):
            a[i, c] = ndimage.gaussian_filter(a[i, c], sigma)
    return torch.from_numpy(a).clamp(-1, 1)


def cut(x: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """Every modality set to the background value (-1) outside each case's mask."""
    return torch.where(torch.from_numpy(masks)[:, None], x, torch.full_like(x, -1.0))


def own_masks(x: torch.Tensor, tau: float) -> np.ndarray:
    u = ((x + 1) / 2).mean(1).numpy()
    out = np.zeros(u.shape, bool)
    for i, ui in enumerate(u):
        lab, n = ndimage.label(ndimage.binary_fill_holes(ui > tau))
        if n:
            out[i] = lab == (1 + int(np.argmax(ndimage.sum(np.ones_like(ui), lab, range(1, n + 1)))))
    return out


def measures(x: torch.Tensor) -> dict[str, float]:
    maps = ts.predict_tissue(model, x)
    m = ts.tissue_measures(x, maps, list(d.modalities))
    depth6 = ts.csf_by_depth(maps)["csf_share_deep"]
    return {"CSF": float(np.mean(m["fraction_CSF"])), "csf_share_surface": float(np.nanmean(m["csf_share_surface"])),
            "csf_share_deep": float(np.nanmean(depth6)), "brain_voxels": float((maps > 0).sum((1, 2, 3)).double().mean()),
            **{f"contrast_{k[-3:]}": float(np.nanmean(v)) for k, v in m.items() if k.startswith("wm_gm")}}


rows = {"real": measures(real), "real, true tissue maps": {
    "CSF": float(((truth == 1).sum((1, 2, 3)) / (truth > 0).sum((1, 2, 3))).mean()),
    **{k: float(np.nanmean(v)) for k, v in ts.csf_by_depth(truth).items()},
    "brain_voxels": float((truth > 0).sum((1, 2, 3)).double().mean())}}
blurred = blur(real, 0.8)
rows["real blurred 0.8"] = measures(blurred)
rows["real blurred 0.8, cut at the true brain"] = measures(cut(blurred, (truth > 0).numpy()))
for tau in (0.05, 0.1, 0.15, 0.2):  # the control: a cut that changes real cases is not skull stripping
    rows[f"real, cut at own mask tau {tau}"] = measures(cut(real, own_masks(real, tau)))
rows["real, cut at evaluate's brain mask"] = measures(cut(real, brain_masks(real)))
rows["generated"] = measures(syn)
rows["generated, cut at evaluate's brain mask"] = measures(cut(syn, brain_masks(syn)))
for tau in (0.02, 0.05, 0.1, 0.15, 0.2, 0.25):
    rows[f"generated, cut at own mask tau {tau}"] = measures(cut(syn, own_masks(syn, tau)))
(Path(__file__).parent / "mask_cut.json").write_text(json.dumps(rows, indent=2) + "\n")
keys = list(rows["real"])
print("| set | " + " | ".join(keys) + " |")
print("| --- |" + " --- |" * len(keys))
for name, r in rows.items():
    print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
