"""The real GPU run (issue "End to end", part 3): synthetic cases with labels (``--data anatomy``,
the default: MNI152 anatomy varied per case; or ``--data phantom``), a mask-conditioned wavelet
flow base model, a mask-conditioned SR stage to BraTS resolution, generation from held-out label
maps, and evaluation (mask fidelity; train-on-synthetic vs train-on-real Dice).

Grids: the SR stage works on 240x240x160 (BraTS 240x240x155 padded); the base model on its 2x
block-average, 120x120x80 (wavelet latent 60x60x40). Cases are written in BraTS geometry.

Stages run in order and each is skipped when its output exists, so the run can be spread over
several device calls (each call <= 10 minutes): ``--stage data``, ``base``, ``sr``, ``generate``,
``evaluate``, or ``all``. Everything lands in ``--out``: configs, runs (metrics.jsonl, previews),
models, generated cases, the report, and ``gpu_run.json`` (device, date, commands, timings, losses).

    python benchmarks/gpu_run.py --out /tmp/gpu_run --stage all --quiet    # H200: 16 min in all
    python benchmarks/gpu_run.py --out /tmp/gpu_run --stage plot           # loss_curves.png (any machine)
    python benchmarks/gpu_run.py --out /tmp/gpu_smoke --smoke --device cpu  # ~10 s on a CPU

Recorded: results/gpu_run_20261126/ (H200), read in docs/gpu-run.md; benchmarks/device_session.sh
ran it as one background job on a lent machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from medidiff.cli.main import main as medidiff
from medidiff.config import load_config, save_resolved
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.prepare import SYNTHETIC_SETS, synthetic_spacing, write_synthetic_set
from medidiff.eval.report import line_chart
from medidiff.training.diffusion import run_dir_of
from medidiff.training.stages import STAGES
from medidiff.viz import write_png

# Each training stage runs for a fixed wall-clock budget (train.max_minutes, constant LR after
# warm-up, EMA weights exported) with max_steps as a ceiling, so the run fits its device time on any card.
FULL = {"cases": 24, "shape": (240, 240, 155), "roi": (240, 240, 160), "patch": 96, "channels": [64, 128, 256],
        "base_steps": 20000, "sr_steps": 20000, "base_minutes": 4.5, "sr_minutes": 4.5, "micro_batch": 2,
        "generate": 6}
SMOKE = {"cases": 8, "shape": (40, 40, 30), "roi": (32, 32, 32), "patch": 16, "channels": [16, 32],
         "base_steps": 20, "sr_steps": 20, "base_minutes": 0.0, "sr_minutes": 0.0, "micro_batch": 2,
         "generate": 2, "eval_steps": 5}


def overrides(p: dict, out: Path, device: str, smoke: bool, kind: str) -> list[str]:
    x, y, z = p["roi"]
    return [
        f"data.spacing={list(synthetic_spacing(kind, p['shape']))}",
        f"output_dir={out / 'runs'}", f"data.manifest={out / 'manifest.json'}", f"data.root={out / 'data'}",
        f"data.roi=[{x}, {y}, {z}]", "data.fold=0", "data.label_mode=regions",
        # in RAM (~5 GB at full size): the first run read full-resolution cases from the disk cache
        # at ~0.15 s each, which bounded the SR stage at ~2 steps/s
        "data.cache=memory", f"data.num_workers={0 if smoke else 4}",
        "conditioning.mask=true", "conditioning.generate_labels=false",
        f"net.channels={p['channels']}", "net.num_res_blocks=[1, 2, 2]" if not smoke else "net.num_res_blocks=1",
        "net.skip=add", f"net.norm_groups={8 if smoke else 32}", "objective.type=flow", "objective.time_shift=true",
        "sampler.name=euler", "sampler.clip_x0=true", f"train.micro_batch={p['micro_batch']}", "train.lr=2.0e-4",
        "train.warmup_steps=100" if not smoke else "train.warmup_steps=2", "train.lr_schedule=constant",
        f"train.precision={'fp32' if smoke else 'bf16'}", f"train.device={device}", "train.log_every=10",
        "train.preview_every=500" if not smoke else "train.preview_every=0", "train.ema.max_decay=0.999",
    ]


def loss_curves(runs: Path) -> np.ndarray:
    """Training loss (mean per logging window) against step for each run under ``runs``."""
    panels = []
    for run in sorted(p for p in runs.iterdir() if (p / "metrics.jsonl").is_file()):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "loss" in r]
        panels.append(line_chart({"loss": ([r["step"] for r in rows], [r["loss"] for r in rows])},
                                 title=f"{run.name} training loss", log_y=True))
    if not panels:
        raise SystemExit(f"no metrics.jsonl under {runs}")
    return np.concatenate(panels, axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", default="all", choices=["data", "base", "sr", "generate", "evaluate", "plot", "all"],
                    help="'plot' (any machine, after the run) draws loss_curves.png from the runs' metrics.jsonl")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", choices=SYNTHETIC_SETS, default="anatomy", help="synthetic data set (default anatomy)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (device logs stay short)")
    ap.add_argument("--compile", action="store_true", help="train.compile for both training stages")
    args = ap.parse_args()
    p = SMOKE if args.smoke else FULL
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    common = [*overrides(p, out, args.device, args.smoke, args.data), f"train.compile={str(args.compile).lower()}"]
    base = load_config(None, [*common, "name=base", "data.downsample=2", "sampler.num_steps=30",
                              f"train.max_steps={p['base_steps']}", f"train.max_minutes={p['base_minutes']}",
                              "train.ckpt_every=1000"])
    sr = load_config(None, [*common, "name=sr", "stage=sr", "cascade.scale=2",
                            f"cascade.patch_size=[{p['patch']}, {p['patch']}, {p['patch']}]",
                            "cascade.sample_mode=whole", "sampler.num_steps=10", f"train.max_steps={p['sr_steps']}",
                            f"train.max_minutes={p['sr_minutes']}", "train.ckpt_every=1000"])
    record_path = out / "gpu_run.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {
        "run": "gpu_run", "command": " ".join([Path(sys.executable).name, *sys.argv]), "stages": {}}
    try:
        import torch

        record["device"] = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
        record["torch"] = torch.__version__
    except Exception:  # noqa: BLE001 - informational only
        pass

    def stage(name: str, done: Path, fn) -> None:
        if args.stage not in (name, "all") or done.exists():
            return
        t0 = time.perf_counter()
        fn()
        record["stages"][name] = {"seconds": round(time.perf_counter() - t0, 1),
                                  "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        record_path.write_text(json.dumps(record, indent=2))
        print(f"[gpu_run] {name}: {record['stages'][name]['seconds']} s", flush=True)

    def data() -> None:
        write_synthetic_set(args.data, out / "data", p["cases"], shape=p["shape"], seed=0, tumour_fraction=1.0,
                            progress=not args.quiet)
        write_manifest(build_brats_manifest(out / "data", num_folds=4, seed=0), out / "manifest.json")

    def train(cfg) -> None:
        save_resolved(cfg, out, f"{cfg.name}.yaml")
        train_fn, export_fn = STAGES[cfg.stage]()
        t0 = time.perf_counter()
        # resume=True continues a stage that an earlier call left unfinished (a fresh run otherwise)
        result = train_fn(cfg, resume=True, progress=not args.quiet)
        seconds = time.perf_counter() - t0
        export_fn(run_dir_of(cfg), out / "models" / cfg.name)
        losses = result.losses
        record.setdefault("losses", {})[cfg.name] = {
            "first_50": sum(losses[:50]) / max(1, min(50, len(losses))),
            "last_50": sum(losses[-50:]) / max(1, min(50, len(losses))),
            "steps": result.final_step, "steps_this_call": len(losses), "train_seconds": round(seconds, 1),
            "time_limited": result.time_limited,
        }

    def generate() -> None:
        code = medidiff(["generate", "--model", str(out / "models" / "base"), "--sr-model", str(out / "models" / "sr"),
                         "--masks", str(out / "manifest.json"), "--root", str(out / "data"), "--num", str(p["generate"]),
                         "--out", str(out / "generated"), "--device", args.device, "--geometry", "native"])
        if code:
            raise SystemExit(code)

    def evaluate() -> None:
        code = medidiff(["evaluate", "--real", str(out / "manifest.json"), "--root", str(out / "data"),
                         "--synthetic", str(out / "generated"), "--out", str(out / "report"),
                         "--set", f"data.roi={list(p['roi'])}", "--set", "data.downsample=2", "--set", "data.fold=0",
                         "--set", "data.label_mode=regions", *(["--steps", str(p["eval_steps"])] if args.smoke else []),
                         "--seeds", *(["0"] if args.smoke else ["0", "1", "2"]),
                         "--device", args.device, "--tasks", "fidelity,utility,image,memorisation"])
        if code:
            raise SystemExit(code)

    stage("data", out / "manifest.json", data)
    stage("base", out / "models" / "base" / "config.json", lambda: train(base))
    stage("sr", out / "models" / "sr" / "config.json", lambda: train(sr))
    stage("generate", out / "generated" / f"case_{p['generate'] - 1:04d}" / "provenance.json", generate)
    stage("evaluate", out / "report" / "report.json", evaluate)
    if args.stage in ("plot", "all"):
        write_png(out / "loss_curves.png", loss_curves(out / "runs"))
    record_path.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
