"""Where a small training step's time goes: steps/s of the GPU run's base model with 0 and N loader
workers, then a torch.profiler table of a few steps (CPU and CUDA self time per op).

The end-to-end run's base stage (UNet3D 64/128/256, 8 x 60x60x40 wavelet latents + masks, batch 2)
made only 5-7 steps/s using 2.6 GiB of an H200; this separates the loader from the step itself.

    python benchmarks/step_profile.py --out /tmp/step_profile                 # GPU, ~2.5 min
    python benchmarks/step_profile.py --out /tmp/step_profile --smoke --device cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from medidiff.config import load_config
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.training.diffusion import train_diffusion


def config(out: Path, device: str, workers: int, seconds: float, smoke: bool, name: str):
    roi = (32, 32, 32) if smoke else (120, 120, 80)
    return load_config(None, [
        f"output_dir={out / 'runs'}", f"name={name}", f"data.manifest={out / 'manifest.json'}",
        f"data.root={out / 'data'}", f"data.roi={list(roi)}", "data.fold=0", "data.label_mode=regions",
        "data.cache=memory", f"data.num_workers={workers}", "conditioning.mask=true",
        "conditioning.generate_labels=false", f"net.channels={[16, 32] if smoke else [64, 128, 256]}",
        "net.num_res_blocks=[1, 2]" if smoke else "net.num_res_blocks=[1, 2, 2]", "net.skip=add",
        f"net.norm_groups={8 if smoke else 32}", "objective.type=flow", "train.micro_batch=2",
        f"train.precision={'fp32' if smoke else 'bf16'}", f"train.device={device}", "train.log_every=10",
        "train.ckpt_every=0", "train.warmup_steps=10", "train.max_steps=100000", f"train.max_minutes={seconds / 60}",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    out = Path(args.out).absolute()
    shutil.rmtree(out / "runs", ignore_errors=True)
    shape = (32, 32, 30) if args.smoke else (120, 120, 78)
    if not (out / "manifest.json").is_file():
        write_phantom_dataset(out / "data", 8, shape=shape, seed=0, tumour_fraction=1.0, progress=False)
        write_manifest(build_brats_manifest(out / "data", num_folds=4, seed=0), out / "manifest.json")
    record: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "rates": {}}
    for workers in (0, args.workers):
        cfg = config(out, args.device, workers, args.seconds, args.smoke, f"w{workers}")
        result = train_diffusion(cfg, progress=False)
        rows = [json.loads(line) for line in (out / "runs" / f"w{workers}" / "metrics.jsonl").read_text().splitlines()]
        later = [r["steps_per_s"] for r in rows[2:]] or [r["steps_per_s"] for r in rows]
        record["rates"][f"workers_{workers}"] = {"steps": result.final_step,
                                                 "steps_per_s_median": sorted(later)[len(later) // 2],
                                                 "gpu_mem_peak_gib": rows[-1].get("gpu_mem_peak_gib")}
        print(workers, record["rates"][f"workers_{workers}"], flush=True)
    # a profile of a few steps (after the warm-up ones) with the loader in the training process
    from torch.profiler import ProfilerActivity, profile, schedule

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    cfg = config(out, args.device, 0, 1e9, args.smoke, "prof")
    cfg.train.max_steps = 16
    with profile(activities=acts, schedule=schedule(wait=0, warmup=0, active=1)) as prof:
        t0 = time.perf_counter()
        train_diffusion(cfg, progress=False)
        record["profiled_16_steps_s"] = time.perf_counter() - t0
    key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=25)
    cpu_table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    (out / "profile.txt").write_text(table + "\n\n" + cpu_table)
    (out / "step_profile.json").write_text(json.dumps(record, indent=2))
    print(table[:6000], flush=True)
    return 0


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
