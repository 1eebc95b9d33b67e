"""Session 63: at which noise level does the shipped model move the necrotic core's edge inward? Real tumour cases
(the anatomy set, label geometry as drawn) are encoded as the model's training input (images + WT/TC/ET in {-1, 1},
the model's own data transforms and codec), noised to a start time t_s of the flow (x = (1 - t) z0 + t eps) and
sampled from there to 0 on the shipped sampler's grid (Heun; the part of the 30-step grid below t_s), then decoded
and thresholded as generate does. Per case and t_s: the core / rim radius ratio (NCR / TC)^(1/3) and TC's
volume against the input's. Also the net's one-call x0 estimate at each t_s (no sampling).
t_s = 1 is a fresh sample (the input ignored), the model's own draw.
python core_time.py REAL_DIR N OUT.json [T_S ...]   (repository root, /tmp/venv)"""
import glob
import json
import sys
import time

import numpy as np
import torch

import medidiff.generation as gen
from medidiff.data.brats import regions_to_labels
from medidiff.data.transforms import build_transforms
from medidiff.samplers import sampling_grid
from medidiff.samplers.flow import sample_heun
from medidiff.training.diffusion import model_input, split_generated

torch.set_num_threads(2)
real_dir, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
starts = [float(x) for x in sys.argv[4:]] or [0.1, 0.3, 0.5, 0.7, 0.9]
pipe = gen.DiffusionPipeline.from_pretrained("medidiff/pretrained/anatomy_2mm")
cfg = pipe.cfg
mods = list(cfg.data.modalities)
tf = build_transforms(cfg.data, train=False)
den = pipe.objective.denoiser(pipe.net)
clamp = gen.image_space_clamp(pipe.codec) if cfg.sampler.clip_x0 else None


def ratio(regions):
    lab = regions_to_labels(regions)
    tc = ((lab == 1) | (lab == 3)).sum()
    return (float(((lab == 1).sum() / tc) ** (1 / 3)) if tc else float("nan")), int(tc)


def decode(z):
    x = pipe.codec.decode(z).clamp(-1, 1).float().cpu().numpy()[0]
    return split_generated(x, cfg)[1]


cases = []
for d in sorted(glob.glob(f"{real_dir}/BraTS-*")):
    meta = json.load(open(glob.glob(f"{d}/*-seg.json")[0]))
    if meta.get("has_tumour"):
        cases.append(d)
    if len(cases) == n:
        break
rows = []
t0 = time.time()
with torch.no_grad():
    for i, d in enumerate(cases):
        cid = d.rstrip("/").split("/")[-1]
        item = {"image": [f"{d}/{cid}-{m}.nii.gz" for m in mods], "label": f"{d}/{cid}-seg.nii.gz"}
        batch = tf(item)
        batch = {"image": batch["image"][None], "label": batch["label"][None]}
        x0, _ = model_input(batch, cfg)
        z0 = pipe.codec.encode(x0)
        r_in, tc_in = ratio(decode(z0))  # the round trip through the codec: the input as the model sees it
        grid = sampling_grid(pipe.objective, cfg.sampler, z0.shape[2:]).tolist()
        g = torch.Generator().manual_seed(1000 + i)
        eps = torch.randn(z0.shape, generator=g)
        row = {"case": cid, "ratio_in": r_in, "tc_in": tc_in, "runs": {}}
        for ts in starts:
            xt = (1 - ts) * z0 + ts * eps
            sub = [ts] + [t for t in grid if t < ts]
            z = sample_heun(den, xt, sub, x0_transform=clamp)
            est = den(xt, torch.full((1,), ts), {})
            if clamp is not None:
                est = clamp(est)
            r_s, tc_s = ratio(decode(z))
            r_e, tc_e = ratio(decode(est))
            row["runs"][str(ts)] = {"ratio": r_s, "tc": tc_s, "x0_ratio": r_e, "x0_tc": tc_e, "steps": len(sub) - 1}
        rows.append(row)
        print(f"{cid} in {r_in:.3f} " + " ".join(f"t{k}: {v['ratio']:.3f} (x0 {v['x0_ratio']:.3f}, TC {v['tc'] / max(tc_in, 1):.2f})"
                                                  for k, v in row["runs"].items()) + f"  {time.time() - t0:.0f} s", flush=True)
        json.dump(rows, open(out, "w"), indent=1)
