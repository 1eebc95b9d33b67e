"""ZeRO stages and multi-GPU scaling of the training loop, on the WDM-128 task.

Driver (one command per machine)::

    python benchmarks/zero_bench.py --gpus 2 --stages 0 1 2 3 --steps 40 --out benchmarks/results/...

launches ``torchrun --nproc_per_node N benchmarks/zero_bench.py --worker ...`` once per
configuration: 1 GPU (the scaling baseline, ZeRO-2) and N GPUs for every stage given. Each worker
trains medidiff's UNet (WDM-128 widths, ~60M parameters) on 8 x 64^3 synthetic wavelet latents
with the flow objective through ``medidiff.training.loop.fit`` (DeepSpeed bf16, fp32 master
weights), identical data and seeds across configurations. Recorded: the per-step loss
trajectory, per-GPU peak memory, and volumes/s after warm-up; then ZeRO-stage agreement (max
relative loss difference vs stage 0) and scaling efficiency vol/s(N) / (N * vol/s(1)).

Runs on CPU too for a smoke test: ``--device cpu --gpus 1 --size 16 --channels 16 32 --steps 3``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.data import Dataset

    from medidiff.nets import build_net, count_parameters
    from medidiff.nets.config import NetConfig
    from medidiff.objectives import build_objective
    from medidiff.objectives.config import ObjectiveConfig
    from medidiff.training.config import TrainConfig
    from medidiff.training.loop import fit

    class Latents(Dataset):
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int):
            g = torch.Generator().manual_seed(1000 + i)  # identical data in every configuration
            return {"image": torch.randn(8, args.size, args.size, args.size, generator=g)}

    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    net = build_net(NetConfig(in_channels=8, out_channels=8, channels=tuple(args.channels), num_res_blocks=2,
                              time_scale=1.0, norm_groups=min(32, args.channels[0])))
    objective = build_objective(ObjectiveConfig(type="flow"))

    def loss_fn(module, batch, gen):
        loss, per_channel = objective.loss(module, batch["image"], None, generator=gen)
        return loss, {}

    cfg = TrainConfig(max_steps=args.steps, micro_batch=args.micro_batch, lr=1e-4, warmup_steps=5,
                      precision="bf16" if args.device == "cuda" else "fp32", deepspeed=f"zero{args.stage}",
                      device=args.device, ckpt_every=0, log_every=1, keep_last=1)
    run = Path(args.run_dir)
    rank = int(os.environ.get("RANK", "0"))
    params = count_parameters(net)  # before ZeRO-3 partitions the weights
    t0 = time.perf_counter()
    try:
        result = fit(net, loss_fn, Latents(args.samples), cfg, run_dir=run, seed=0, progress=False)
    except BaseException:
        import traceback

        run.mkdir(parents=True, exist_ok=True)
        (run / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    (run / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "peak_mem_gib": peak, "wall_s": wall, "params": params,
        "losses": result.losses}))


def launch(args: argparse.Namespace, gpus: int, stage: int, tag: str, root: Path) -> dict:
    run = root / tag
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           str(Path(__file__).resolve()), "--worker", "--stage", str(stage), "--run-dir", str(run),
           "--steps", str(args.steps), "--size", str(args.size), "--micro-batch", str(args.micro_batch),
           "--samples", str(args.samples), "--device", args.device, "--channels", *map(str, args.channels)]
    print(f"== {tag}: {' '.join(cmd[3:])}", flush=True)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        errs = "\n".join(p.read_text()[-3000:] for p in sorted(run.glob("rank*.err"))) or proc.stderr[-3000:]
        print(errs, flush=True)
        return {"tag": tag, "gpus": gpus, "stage": stage, "error": errs}
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(gpus)]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    warm = [r["volumes_per_s"] for r in rows if r["step"] > min(10, args.steps // 2)]
    out = {"tag": tag, "gpus": gpus, "stage": stage, "params": ranks[0]["params"],
           "losses": ranks[0]["losses"], "peak_mem_gib_per_gpu": [r["peak_mem_gib"] for r in ranks],
           "volumes_per_s": sum(warm) / max(1, len(warm)), "wall_s": ranks[0]["wall_s"]}
    print(f"   vol/s {out['volumes_per_s']:.1f}  peak GiB {out['peak_mem_gib_per_gpu']}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--stage", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, nargs="+", default=[64, 128, 128, 256, 256])
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--run-dir", default="/tmp/zero_bench")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    root = Path(args.run_dir)
    results = [launch(args, 1, 2, "1gpu_zero2", root)]
    if args.gpus > 1:
        results += [launch(args, args.gpus, s, f"{args.gpus}gpu_zero{s}", root) for s in args.stages]
    ok = [r for r in results if "error" not in r]
    base = next((r for r in sorted(ok, key=lambda r: r["stage"]) if r["gpus"] == args.gpus), None)
    summary = {}
    if base is not None:
        for r in ok:
            if r["gpus"] == args.gpus:
                diffs = [abs(a - b) / max(abs(b), 1e-8) for a, b in zip(r["losses"], base["losses"])]
                summary[f"zero{r['stage']}_max_rel_loss_diff_vs_zero{base['stage']}"] = max(diffs)
    one = next((r for r in ok if r["gpus"] == 1), None)
    for r in ok:
        if one is not None and r["gpus"] > 1 and r["stage"] == 2:
            summary[f"scaling_efficiency_1_to_{r['gpus']}_zero2"] = r["volumes_per_s"] / (r["gpus"] * one["volumes_per_s"])
    device = torch.cuda.get_device_name(0) if args.device == "cuda" and torch.cuda.is_available() else "cpu"
    record = {"benchmark": "zero_bench", "device": device, "gpus": args.gpus,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__,
              "task": f"WDM-128: 8 x {args.size}^3 latents, micro batch {args.micro_batch}/GPU, flow, "
                      "DeepSpeed bf16 + fp32 master, torch AdamW, eager (no compile)",
              "results": results, "summary": summary}
    out = Path(args.out or REPO / "benchmarks" / "results" /
               f"zero_{device.replace(' ', '-')}_x{args.gpus}_{dt.date.today():%Y%m%d}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
