"""The SR stage's loader against its training step (issue 15, deliverable 6): does the step wait for data?

On phantom cases written at the config's grid (default ``configs/cascade_sr.yaml``: 240x240x160 cases,
96^3 patches, disk cache, 4 loader workers), for each ``--mode``:

* ``windows``: the training pipeline cuts each case's window on the host (medidiff.cascade.windows);
* ``whole``: the former pipeline: whole cases go to the device and the loss cuts the patch there.

The loader is built as ``medidiff train`` builds it (SeededItems over a StreamSampler, pinned memory
on CUDA, persistent workers) and wrapped in DataWait; each step moves the batch to the device
(non_blocking), runs SRLoss with the config's net, backward and AdamW (bf16 autocast on CUDA). Per
mode: steady-state steps/s, ``data_wait_share`` (the share of wall time spent in ``next(it)``, after
``--warmup`` steps), MiB copied to the device per step, and the loader's host seconds per batch with
no step at all (main process). Random weights: timing only.

    python benchmarks/sr_loader_bench.py --device cuda                      # shipped cascade_sr.yaml
    python benchmarks/sr_loader_bench.py --device cuda --set data.cache=memory --set data.num_workers=0
    python benchmarks/sr_loader_bench.py --smoke --device cpu --out /tmp/sr_loader.json

Writes ``benchmarks/results/sr_loader_<device>_<date>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medidiff.cascade.sr_task import SRLoss, resolve_sr_net_config, train_window_steps
from medidiff.config import ConfigError, load_config
from medidiff.data.dataset import collate_cases
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.nets import build_net
from medidiff.objectives import build_objective
from medidiff.training.data_wait import DataWait
from medidiff.training.diffusion import build_codec_for, build_datasets
from medidiff.training.loop import move_to
from medidiff.training.sampler import ResumableSampler, SeededItems, StreamSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import write_record  # noqa: E402  (one results-file naming for the benchmarks)

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "cascade_sr.yaml"
SMOKE = ["data.roi=[32, 32, 32]", "cascade.patch_size=[16, 16, 16]", "data.cache=memory", "data.num_workers=0",
         "net.channels=[8, 16]", "net.num_res_blocks=1", "net.norm_groups=4", "train.micro_batch=2"]


def loader(dataset: Any, *, micro_batch: int, workers: int, pin: bool, seed: int) -> DataLoader:
    """The training loop's loader (medidiff.training.loop): seeded items over an endless stream."""
    order = ResumableSampler(len(dataset), seed=seed)
    return DataLoader(SeededItems(dataset), batch_size=micro_batch, sampler=StreamSampler(order, micro_batch, 0, 0),
                      collate_fn=collate_cases, num_workers=workers, persistent_workers=workers > 0, pin_memory=pin)


def batch_mib(batch: dict[str, Any]) -> float:
    return sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v)) / 2**20


def run_mode(cfg: Any, mode: str, work: Path, *, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    codec = build_codec_for(cfg)
    train_random = train_window_steps(cfg, codec) if mode == "windows" else None
    train, _ = build_datasets(cfg, work, train_random=train_random)
    mb, workers = cfg.train.micro_batch, cfg.data.num_workers

    # the loader alone, in this process: host seconds to produce one batch
    it = iter(loader(train, micro_batch=mb, workers=0, pin=False, seed=cfg.seed))
    next(it)
    start = time.perf_counter()
    for _ in range(3):
        batch = next(it)
    host_s = (time.perf_counter() - start) / 3
    del it

    torch.manual_seed(cfg.seed)
    net = build_net(resolve_sr_net_config(cfg, codec)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = SRLoss(cfg, codec, build_objective(cfg.objective, getattr(codec, "channel_names", None)))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    it = DataWait(iter(loader(train, micro_batch=mb, workers=workers, pin=device.type == "cuda", seed=cfg.seed)))
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            it.lap()
            t0 = time.perf_counter()
        batch = move_to(next(it), device)
        gen = torch.Generator(device=device).manual_seed(step)
        with autocast:
            loss, _ = loss_fn(net, batch, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    share = it.lap()["data_wait_share"]
    if workers > 0:
        it._shutdown_workers()
    return {"mode": mode, "steps": steps, "steps_per_s": round(steps / wall, 3), "data_wait_share": round(share, 4),
            "mib_to_device_per_step": round(batch_mib(batch), 1),
            "batch_shapes": {k: list(v.shape) for k, v in batch.items() if torch.is_tensor(v)},
            "loader_host_s_per_batch": round(host_s, 4), "num_workers": workers, "cache": cfg.data.cache,
            "loader_bound_warnings": it.warnings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(SHIPPED))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--device", default="cuda")
    p.add_argument("--mode", nargs="+", choices=["windows", "whole"], default=["windows", "whole"])
    p.add_argument("--cases", type=int, default=4, help="phantom cases written at the config's grid")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--work", default="/tmp/sr_loader_bench", help="phantoms, manifest and caches go here")
    p.add_argument("--smoke", action="store_true", help="tiny grid and net (CPU check)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("sr_loader_bench: --device cuda: no CUDA device here; use --device cpu --smoke", file=sys.stderr)
        return 2
    if args.cases < 2 or args.steps < 1 or args.warmup < 0:
        print("sr_loader_bench: --cases must be >= 2, --steps >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    work = Path(args.work)
    overrides = [*(SMOKE if args.smoke else []), *args.set, f"output_dir={work / 'runs'}",
                 f"data.manifest={work / 'm.json'}", f"data.root={work / 'data'}", "data.fold=null",
                 f"data.cache_dir={work / 'cache'}", f"train.device={args.device}"]
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"sr_loader_bench: {exc}", file=sys.stderr)
        return 2
    if "windows" in args.mode and train_window_steps(cfg, build_codec_for(cfg)) is None:
        print("sr_loader_bench: --mode windows needs a block-local codec (latent.wavelet: haar)", file=sys.stderr)
        return 2
    shape = tuple(int(r) for r in cfg.data.roi)
    stamp = work / "phantoms.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != {"shape": list(shape), "cases": args.cases}:
        write_phantom_dataset(work / "data", args.cases, shape=shape, seed=0, progress=False)
        write_manifest(build_brats_manifest(work / "data", num_folds=2), work / "m.json")
        stamp.write_text(json.dumps({"shape": list(shape), "cases": args.cases}))

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    results = []
    for mode in args.mode:
        results.append(run_mode(cfg, mode, work, device=device, steps=args.steps, warmup=args.warmup))
        print(json.dumps(results[-1]), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or platform.machine())
    record = {"benchmark": "sr_loader", "device": name, "device_arg": args.device,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__,
              "config": args.config, "overrides": args.set, "smoke": args.smoke, "grid": list(shape),
              "patch": list(cfg.cascade.patch_size), "micro_batch": cfg.train.micro_batch,
              "weights": "random (timing only)", "results": results}
    write_record(record, args.out, stem="sr_loader", device=name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
