"""`medidiff demo`: the whole path on the embedded phantom data, in one command.

phantom data -> manifest -> validation -> wavelet latents + flow-matching UNet trained under
DeepSpeed (one process) -> exported EMA model -> generated NIfTI cases with labels and previews.
The CPU preset finishes in minutes on 2 cores; ``--preset gpu --device cuda`` runs a larger one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError

# Sizes of the two presets; everything else is the experiment config below.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"cases": 16, "shape": (32, 32, 24), "channels": [32, 64], "steps": 1500, "micro_batch": 2,
            "precision": "fp32", "generate": 2},
    "gpu": {"cases": 48, "shape": (96, 96, 64), "channels": [64, 128, 256], "steps": 3000, "micro_batch": 4,
            "precision": "bf16", "generate": 4},
}


def demo_overrides(preset: dict[str, Any], out: Path, device: str) -> list[str]:
    """The experiment, as `--set` overrides of the defaults (also written to OUT/config.yaml)."""
    x, y, z = preset["shape"]
    return [
        "name=demo", f"output_dir={out / 'runs'}", "seed=0",
        f"data.manifest={out / 'manifest.json'}", f"data.root={out / 'data'}", f"data.roi=[{x}, {y}, {z}]",
        "data.fold=null", "data.label_mode=regions", "data.cache=memory",
        "latent.levels=1", "conditioning.generate_labels=true",
        f"net.channels={preset['channels']}", "net.num_res_blocks=1", "net.norm_groups=16",
        "objective.type=flow", "objective.time_sampling=logit_normal", "objective.loss=l2",
        "sampler.name=euler", "sampler.num_steps=30", "sampler.clip_x0=true",
        f"train.max_steps={preset['steps']}", f"train.micro_batch={preset['micro_batch']}", "train.lr=2.0e-3",
        "train.warmup_steps=20", f"train.precision={preset['precision']}", "train.deepspeed=zero2",
        f"train.device={device}", f"train.ckpt_every={max(100, preset['steps'] // 4)}", "train.log_every=10",
        "train.ema.max_decay=0.99",
    ]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole path on phantom data (the README's main job)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    add_dry_run(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    preset = dict(PRESETS[args.preset])
    if args.steps is not None:
        if args.steps < 1:
            raise MedidiffError("--steps must be >= 1")
        preset["steps"] = args.steps
    out = Path(args.out).absolute()
    overrides = demo_overrides(preset, out, args.device)
    from medidiff.config import load_config, save_resolved

    cfg = load_config(None, overrides)
    if dry_run(args, {"options": options_of(args), "preset": preset, "config": cfg}):
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from medidiff.cli.main import main as cli
    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.phantom import write_phantom_dataset
    from medidiff.data.validate import format_problems, validate_manifest
    from medidiff.generation import export_run
    from medidiff.training.diffusion import run_dir_of, train_diffusion

    t0 = time.perf_counter()
    say = lambda msg: print(f"[demo {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)  # noqa: E731
    data = out / "data"
    say(f"1/5 phantom data: {preset['cases']} cases of {preset['shape']} -> {data}")
    write_phantom_dataset(data, preset["cases"], shape=preset["shape"], seed=0, progress=False)
    say(f"2/5 manifest -> {out / 'manifest.json'}")
    write_manifest(build_brats_manifest(data, name="phantom", num_folds=5, seed=0), out / "manifest.json")
    problems = validate_manifest(out / "manifest.json", data)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise MedidiffError("the phantom manifest did not validate:\n" + format_problems(errors))
    say("    validated: every file opened, no problems")
    save_resolved(cfg, out, "config.yaml")
    say(f"3/5 training {preset['steps']} steps (wavelet latents + flow matching, DeepSpeed ZeRO-2, "
        f"{args.device}); config -> {out / 'config.yaml'}")
    result = train_diffusion(cfg, progress=True)
    run_dir = run_dir_of(cfg)
    first, last = result.losses[:20], result.losses[-20:]
    say(f"    loss {sum(first) / len(first):.3f} (first 20 steps) -> {sum(last) / len(last):.3f} (last 20)")
    model = export_run(run_dir, out / "model")
    say(f"4/5 model (EMA weights, safetensors + JSON) -> {model}")
    say(f"5/5 generating {preset['generate']} cases -> {out / 'generated'}")
    device = "cuda" if args.device in ("cuda", "auto") and cfg.train.device != "cpu" else "cpu"
    code = cli(["generate", "--model", str(model), "--num", str(preset["generate"]), "--out",
                str(out / "generated"), "--device", device, "--no-progress"])
    if code:
        return code
    say("done. Outputs:")
    for name, path in [("phantom data", data), ("manifest", out / "manifest.json"),
                       ("metrics (JSONL)", run_dir / "metrics.jsonl"), ("TensorBoard", run_dir / "tensorboard"),
                       ("checkpoints", run_dir / "checkpoints"), ("model", model),
                       ("generated cases", out / "generated"),
                       ("preview", out / "generated" / "case_0000" / "preview.png")]:
        print(f"  {name:16s} {path}")
    return 0
