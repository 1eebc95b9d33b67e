"""Session 61: are the shipped model's small necrotic cores in its images too, or only in its labels? The tracked
feature net (a SegResNet trained on the training fold's real cases, fold 0 held out; WT/TC/ET sigmoid heads)
segments the shipped model's 64 CPU cases and 64 held-out real cases, read on evaluate's brain scale through
evaluate's own pipelines. The necrotic core (TC without ET) of each case's prediction against its label map: the
segmenter's bias on real cases (prediction against truth) beside the synthetic cases' (prediction against the
generated labels). Held-out real cases: the segmenter never saw them (an evaluation, no generator reads them).
python core_images.py [N] (repository root, /tmp/venv)"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from medidiff.config import from_dict
from medidiff.data.transforms import build_transforms
from medidiff.eval import data as evdata
from medidiff.eval.features import segmenter_features_for
from medidiff.eval.realism import tumour_statistics
from medidiff.eval.segmentation import predict
from medidiff.experiment import ExperimentConfig

N = int(sys.argv[1]) if len(sys.argv) > 1 else 64
torch.set_num_threads(2)
cfg = from_dict(ExperimentConfig, json.loads(Path("medidiff/pretrained/anatomy_2mm/config.json").read_text())["config"],
                source="anatomy_2mm")
dcfg = evdata.eval_data_config(cfg.data, "brain")
manifest = "/work/s53/lease/quality_scale/manifest.json"
_, held, label_map = evdata.real_items(manifest, "/work/s53/anat1536", dcfg.fold)
real = evdata.load_cases("real_heldout", held[:N], build_transforms(dcfg, train=False, label_map=label_map),
                         with_label=True, progress=False)
syn_items = evdata.synthetic_items("/work/s57/cpu/bf16_64", dcfg.modalities, max_cases=N)
syn = evdata.load_cases("synthetic", syn_items, evdata.synthetic_transforms(dcfg, background=0.0, with_label=True),
                        with_label=True, progress=False)
model, _ = segmenter_features_for("benchmarks/nets/anatomy1536_fold0/feature_net", dcfg)
with torch.no_grad():
    pred = {name: predict(model, s.images, batch_size=4, device="cpu") for name, s in (("real", real), ("syn", syn))}


def core_line(what: str, labels: torch.Tensor) -> np.ndarray:
    t = tumour_statistics(labels)
    v = t["log_core_share"][t["present"] & t["core"]]
    with_tumour = int(t["present"].sum())
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9]) if v.size else [np.nan] * 5
    print(f"| {what} | {with_tumour} | {int((t['present'] & t['core']).sum())} | "
          + " / ".join(f"{x:.2f}" for x in q) + " |")
    return v


print(f"{len(real.images)} held-out real cases, {len(syn.images)} synthetic (the shipped model's CPU cases)\n")
print("| labels | cases with a tumour | with a core | log10 core / WT: 10 / 25 / 50 / 75 / 90 % |\n|---|---|---|---|")
core_line("real, truth", real.labels)
core_line("real, the segmenter's prediction", pred["real"])
core_line("synthetic, generated labels", syn.labels)
core_line("synthetic, the segmenter's prediction on its images", pred["syn"])


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(1).float(), b.flatten(1).float()
    keep = (a.sum(1) + b.sum(1)) > 0
    return float((2 * (a * b).sum(1)[keep] / (a.sum(1) + b.sum(1))[keep]).mean())


def cores(labels: torch.Tensor) -> torch.Tensor:
    return labels[:, 1] & ~labels[:, 2]


print("\n| set | Dice WT / TC / ET / core, prediction against labels (cases where either has the region) |\n|---|---|")
for name, s in (("real", real), ("syn", syn)):
    p = pred[name]
    print(f"| {name} | " + " / ".join(f"{dice(p[:, k], s.labels[:, k]):.3f}" for k in range(3))
          + f" / {dice(cores(p), cores(s.labels)):.3f} |")
