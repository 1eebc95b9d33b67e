"""How long `medidiff generate` spends writing cases, apart from sampling: a tiny model (2 flow steps of a
[16, 32] net, so sampling costs ~nothing) generates --num cases at the anatomy model's output grid in each
--geometry, through the CLI as a user runs it. What is left is the host's work per case: putting it in its grid
(brats: a resample to 240x240x155 at 1 mm), NIfTI + gzip, the PNG preview and the provenance.

    python benchmarks/generate_write_bench.py --out benchmarks/results/<folder>/write.json [--num 16]
    python benchmarks/generate_write_bench.py --model anatomy-2mm --device cuda --steps 30 --num 16 --batch 8 --out ...

Each geometry is timed with one writer thread (what generate did before session 48: each batch written after it
was sampled, in the sampling thread) and with the default writer threads (medidiff.utils.threads.BatchWriter), or
with each of --writers; and at each --batch given (several: `--batch 1 8` compares them within one command, as
results/generate_batch_h100_20261206 could not).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import medidiff.utils.threads as threads
from medidiff.cli.main import main as cli
from medidiff.config import load_config
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import export_run
from medidiff.training.diffusion import run_dir_of, train_diffusion

GRID = [80, 96, 80]  # the shipped anatomy model's grid (2 mm)


def tiny_model(tmp: Path) -> Path:
    write_phantom_dataset(tmp / "data", 4, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    cfg = load_config(None, [
        "name=tiny", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}",
        "data.fold=0", f"data.roi={GRID}", "data.spacing=[2.0, 2.0, 2.0]", "data.cache=memory",
        "data.label_mode=regions", "conditioning.generate_labels=true", "net.channels=[16, 32]",
        "net.num_res_blocks=1", "net.norm_groups=8", "objective.type=flow", "sampler.name=euler",
        "sampler.num_steps=2", "train.max_steps=1", "train.micro_batch=1", "train.precision=fp32",
        "train.device=cpu", "train.warmup_steps=1", "train.preview_every=0"])
    train_diffusion(cfg, progress=False)
    return export_run(run_dir_of(cfg), tmp / "model")


def one_case_write_seconds() -> dict[str, float]:
    """One 1 mm case as generate writes it (4 float32 modalities, the label, the PNG), one thread: a smooth
    240x240x155 volume (noise would compress worse than anatomy), no resample."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from medidiff.io import write_nifti
    from medidiff.viz import preview_image, write_png

    vol = gaussian_filter(np.random.default_rng(0).normal(0, 1, (240, 240, 155)).astype(np.float32), 3)
    vol = (vol - vol.min()) / (vol.max() - vol.min())
    vol[:40] = vol[-40:] = 0
    label = (vol > 0.7).astype(np.uint8)
    affine = np.eye(4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for m in range(4):
            write_nifti(Path(tmp) / f"m{m}.nii.gz", vol, affine, provenance={"bench": True})
        t1 = time.perf_counter()
        write_nifti(Path(tmp) / "seg.nii.gz", label, affine, provenance={"bench": True}, is_label=True)
        t2 = time.perf_counter()
        write_png(Path(tmp) / "preview.png", preview_image([vol] * 4, label, modalities=["a", "b", "c", "d"]))
        t3 = time.perf_counter()
    seconds = {"four_modalities": t1 - t0, "label": t2 - t1, "png": t3 - t2, "case": t3 - t0}
    return {k: round(v, 2) for k, v in seconds.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--batch", type=int, nargs="+", default=[4],
                    help="generate's --batch, a row each (several: compared within one command, session 50)")
    ap.add_argument("--case-write-only", action="store_true", help="only one_case_write_seconds (a few seconds)")
    ap.add_argument("--model", help="a model folder or shipped name (e.g. anatomy-2mm) instead of the tiny model: "
                                    "sampling then costs what it costs, so the rows show how much writing adds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2, help="sampler steps (default %(default)s)")
    ap.add_argument("--writers", type=int, nargs="+", help="writer threads a row (default: 1, as before session "
                    "48, and the default, medidiff.utils.threads.WRITER_THREADS)")
    ap.add_argument("--geometries", nargs="+", default=["native", "brats"], choices=["native", "brats"])
    args = ap.parse_args()
    rows: dict[str, dict] = {"one 1 mm case written on one thread, seconds": one_case_write_seconds()}
    print(rows, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = None if args.case_write_only else args.model or tiny_model(Path(tmp))
        default = threads.WRITER_THREADS
        rows_wanted = [(g, b, w) for g in (args.geometries if model is not None else ()) for b in args.batch
                       for w in args.writers or (1, default)]
        try:
            for geometry, batch, writers in rows_wanted:
                threads.WRITER_THREADS = writers
                out = Path(tmp) / f"gen_{geometry}_{batch}_{writers}"
                t0 = time.perf_counter()
                rc = cli(["generate", "--model", str(model), "--num", str(args.num), "--out", str(out), "--steps",
                          str(args.steps), "--batch", str(batch), "--geometry", geometry, "--device", args.device,
                          "--no-progress"])
                seconds = time.perf_counter() - t0
                assert rc == 0, rc
                # keyed by the threads asked for (two requests above the cores would share a key otherwise); the
                # threads the writer used (at most the usable cores) beside the figures
                key = f"{geometry}, --batch {batch}, writer threads {writers}"
                rows[key] = {"cases": args.num, "seconds": round(seconds, 2), "seconds_per_case": round(seconds / args.num, 3),
                             "threads_used": min(writers, threads.usable_cores())}
                print(key, rows[key], flush=True)
        finally:
            threads.WRITER_THREADS = default
    record = {"command": " ".join(sys.argv), "model": args.model or "tiny (trained here)", "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": platform.node(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__, "grid": None if args.model else GRID, "batch": args.batch, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
