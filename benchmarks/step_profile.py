"""Where a small training step's time goes: steps/s of the GPU run's base model with 0 and N loader
workers, then per-step kernel launches, host reads and CUDA time (profiles of 8- and 24-step runs,
subtracted, so set-up and the final checkpoint cancel).

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
        f"net.norm_groups={8 if smoke else 32}", "objective.type=flow", "sampler.name=euler", "train.micro_batch=2",
        f"train.precision={'fp32' if smoke else 'bf16'}", f"train.device={device}", "train.log_every=10",
        "train.ckpt_every=0", "train.warmup_steps=10", "train.max_steps=100000", f"train.max_minutes={seconds / 60}",
    ])


def profile_run(out: Path, args: argparse.Namespace, steps: int) -> dict[str, dict[str, float]]:
    """{op or kernel name: {count, cpu_us, cuda_us}} of one whole training run of ``steps`` steps,
    plus "__wall__" (its wall time in cpu_us)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    cfg = config(out, args.device, 0, 1e9, args.smoke, f"prof{steps}")
    cfg.train.max_steps = steps
    cfg.train.log_every = steps  # one log at the end: the same once-per-run work in both runs
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        train_diffusion(cfg, progress=False)
        wall = time.perf_counter() - t0
    table = {e.key: {"count": float(e.count), "cpu_us": float(e.self_cpu_time_total),
                     "cuda_us": float(getattr(e, "self_device_time_total", 0.0) or 0.0)}
             for e in prof.key_averages()}
    table["__wall__"] = {"count": 1.0, "cpu_us": wall * 1e6, "cuda_us": 0.0}
    return table


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
    # Per-step costs by difference: profile whole runs of 8 and 24 steps and subtract, which
    # cancels what happens once per run (engine set-up, cache filling, the final checkpoint).
    short, long_ = profile_run(out, args, 8), profile_run(out, args, 24)
    per_step = {name: {k: (long_[name][k] - short.get(name, {}).get(k, 0)) / 16 for k in long_[name]}
                for name in long_}
    top = sorted(per_step.items(), key=lambda kv: -(kv[1]["cuda_us"] or kv[1]["cpu_us"]))[:30]
    record["per_step"] = {
        "wall_ms": (long_["__wall__"]["cpu_us"] - short["__wall__"]["cpu_us"]) / 16 / 1e3,
        "cuda_busy_ms": sum(v["cuda_us"] for k, v in per_step.items() if k != "__wall__") / 1e3,
        "kernel_launches": per_step.get("cudaLaunchKernel", {}).get("count", 0.0),
        "device_to_host_copies": sum(v["count"] for k, v in per_step.items() if "DtoH" in k),
        "top_ops": {k: v for k, v in top if k != "__wall__"},
    }
    (out / "step_profile.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record["per_step"].items() if k != "top_ops"}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
