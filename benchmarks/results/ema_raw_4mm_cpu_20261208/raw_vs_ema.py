"""Session 64: 32 cases (case seeds 0..31, the model's sampler) from a run's exported EMA model and from a copy of it
holding the run's last raw (non-EMA) weights: per case WT / TC / ET voxels and the core / rim radius ratio
(NCR / TC)^(1/3). python raw_vs_ema.py RUN_DIR OUT.json (the raw-weight model copy is written beside OUT.json:
give a scratch folder)"""
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import medidiff.generation as gen

torch.set_num_threads(2)
run, out = Path(sys.argv[1]), Path(sys.argv[2])
ema_dir = run / "model"
step = sorted((run / "checkpoints").glob("step_*"))[-1]
raw_dir = out.parent / f"{run.name}_raw_model"
shutil.rmtree(raw_dir, ignore_errors=True)
shutil.copytree(ema_dir, raw_dir)
exported, raw = load_file(str(ema_dir / "model.safetensors")), load_file(str(step / "model.safetensors"))
assert exported.keys() == raw.keys(), (sorted(exported.keys() ^ raw.keys())[:5])
save_file({k: v.to(exported[k].dtype).contiguous() for k, v in raw.items()}, str(raw_dir / "model.safetensors"))
ema = load_file(str(step / "ema.safetensors"))
gap = {k: float((ema[k].float() - exported[k].float()).abs().max()) for k in ema if k in exported}
rows = {"checkpoint": step.name, "ema_checkpoint_vs_export_max_abs": max(gap.values()) if gap else None,
        "raw_vs_export_rel": float(sum((raw[k].float() - exported[k].float()).norm() ** 2 for k in raw) ** 0.5
                                   / sum(exported[k].float().norm() ** 2 for k in raw) ** 0.5)}
for name, folder in (("ema", ema_dir), ("raw", raw_dir)):
    pipe = gen.DiffusionPipeline.from_pretrained(folder)
    cases = []
    for s in range(32):
        lab = pipe([s])[0].label
        tc = int(((lab == 1) | (lab == 3)).sum())
        cases.append({"seed": s, "wt": int((lab > 0).sum()), "tc": tc, "et": int((lab == 3).sum()),
                      "ratio": float(((lab == 1).sum() / tc) ** (1 / 3)) if tc else None})
    rows[name] = cases
    print(name, sum(c["wt"] > 0 for c in cases), "of 32 with a tumour,", sum(c["tc"] > 0 for c in cases), "with a TC",
          flush=True)
    out.write_text(json.dumps(rows, indent=1))
