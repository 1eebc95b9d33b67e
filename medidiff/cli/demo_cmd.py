"""`medidiff demo`: the whole path on a synthetic data set, in one command.

``--data anatomy`` (default: MNI152 anatomy varied per case, medidiff.data.anatomy) or
``--data phantom`` (procedural heads) -> manifest -> validation -> base model (wavelet latents +
flow matching, images and labels generated together) at half resolution -> cascade SR stage to full resolution -> exported
EMA models -> generated NIfTI cases with labels, previews and provenance -> evaluation report
(train-on-synthetic segmentation utility, image metrics, memorisation audit).

Both models train under DeepSpeed (one process). The CPU preset finishes in a few minutes on 2
cores; ``--preset gpu --device cuda`` runs a larger one. The models are small and briefly trained:
the demo shows the path, not final quality. What a trained model gives is the last step: two
cases from the shipped pretrained model (medidiff.pretrained, ``--no-pretrained`` skips it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError

# shape: the training grid (data.roi). anatomy_shape: the grid the anatomy set is written at; its
# spacing (BraTS field of view / shape) fits a whole brain into the roi once the pipeline has
# resampled to it and cropped to the brain (cpu: ~6 mm, gpu: 1.5 mm). Phantoms are written at shape.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"cases": 16, "shape": (32, 32, 32), "anatomy_shape": (40, 40, 26), "channels": [32, 64], "base_steps": 1500, "sr_steps": 600,
            "sr_patch": 16, "micro_batch": 2, "precision": "fp32", "generate": 4, "eval_steps": 60,
            "eval_seeds": [0]},
    "gpu": {"cases": 32, "shape": (128, 128, 128), "anatomy_shape": (160, 160, 104), "channels": [64, 128, 256], "base_steps": 1500,
            "sr_steps": 1000, "sr_patch": 64, "micro_batch": 4, "precision": "bf16", "generate": 8,
            "eval_steps": 200, "eval_seeds": [0, 1]},
}


def data_grid(preset: dict[str, Any], kind: str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(grid the data set is written at, spacing the pipeline resamples it to)."""
    from medidiff.data.prepare import synthetic_spacing

    shape = preset["anatomy_shape"] if kind == "anatomy" else preset["shape"]
    return shape, synthetic_spacing(kind, shape)


def common_overrides(preset: dict[str, Any], out: Path, device: str, kind: str = "anatomy") -> list[str]:
    x, y, z = preset["shape"]
    _, spacing = data_grid(preset, kind)
    return [
        f"output_dir={out / 'runs'}", "seed=0", f"data.spacing={list(spacing)}",
        f"data.manifest={out / 'manifest.json'}", f"data.root={out / f'data_{kind}'}", f"data.roi=[{x}, {y}, {z}]",
        "data.fold=0", "data.label_mode=regions", "data.cache=memory",
        "latent.levels=1", "conditioning.generate_labels=true",
        f"net.channels={preset['channels']}", "net.num_res_blocks=1", "net.norm_groups=16",
        "objective.type=flow", "objective.time_sampling=logit_normal", "sampler.name=euler",
        "sampler.clip_x0=true", f"train.micro_batch={preset['micro_batch']}", "train.lr=2.0e-3",
        "train.warmup_steps=20", f"train.precision={preset['precision']}", "train.deepspeed=none",
        f"train.device={device}", "train.log_every=10", "train.ema.max_decay=0.99",
    ]


def base_overrides(preset: dict[str, Any], out: Path, device: str, kind: str = "anatomy") -> list[str]:
    """Base model: the half-resolution grid (data.downsample 2), images + WT/TC/ET generated."""
    return [*common_overrides(preset, out, device, kind), "name=demo_base", "data.downsample=2",
            "sampler.num_steps=30", f"train.max_steps={preset['base_steps']}",
            f"train.ckpt_every={max(100, preset['base_steps'] // 4)}"]


def sr_overrides(preset: dict[str, Any], out: Path, device: str, kind: str = "anatomy") -> list[str]:
    """SR stage: full grid, trained on random patches, conditioned on the 2x-degraded volume."""
    p = preset["sr_patch"]
    return [*common_overrides(preset, out, device, kind), "name=demo_sr", "stage=sr", "cascade.scale=2",
            f"cascade.patch_size=[{p}, {p}, {p}]", "cascade.sample_mode=whole", "sampler.num_steps=10",
            f"train.max_steps={preset['sr_steps']}", f"train.ckpt_every={max(100, preset['sr_steps'] // 4)}"]


def register(sub: argparse._SubParsersAction) -> None:
    from medidiff.data.prepare import SYNTHETIC_SETS

    p = sub.add_parser("demo", help="run the whole path on synthetic data (the README's main job)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument(
        "--data",
        choices=SYNTHETIC_SETS,
        default="anatomy",
        help="anatomy: MNI152 brains varied per case (default; for judging realism); phantom: "
        "procedural heads (for exercising code)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--no-pretrained", action="store_true",
                   help="skip the last step: two cases from the shipped pretrained model (~1 CPU-minute)")
    p.add_argument("--steps", type=int, help="override the base model's training steps (SR gets 2/5 of them)")
    add_dry_run(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    preset = dict(PRESETS[args.preset])
    if args.steps is not None:
        if args.steps < 1:
            raise MedidiffError("--steps must be >= 1")
        preset["base_steps"], preset["sr_steps"] = args.steps, max(1, 2 * args.steps // 5)
    out = Path(args.out).absolute()
    from medidiff.config import load_config, save_resolved

    base_cfg = load_config(None, base_overrides(preset, out, args.device, args.data))
    sr_cfg = load_config(None, sr_overrides(preset, out, args.device, args.data))
    if dry_run(args, {"options": options_of(args), "preset": preset, "base": base_cfg, "sr": sr_cfg}):
        return 0
    import logging
    import os

    if args.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        # The CPU preset's convs are tiny: one thread is as fast as two on an idle 2-core box and
        # ~50x faster than two when another process wants the second core (OpenMP barriers spin).
        torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from medidiff.cli.main import main as cli
    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.prepare import write_synthetic_set
    from medidiff.data.validate import format_problems, validate_manifest
    from medidiff.training.diffusion import run_dir_of
    from medidiff.training.stages import STAGES

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[demo {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    data = out / f"data_{args.data}"  # one folder per set: a re-run with the other --data does not clash
    grid, spacing = data_grid(preset, args.data)
    say(f"1/7 {args.data} data: {preset['cases']} cases of {grid} at {spacing} mm -> {data}")
    write_synthetic_set(args.data, data, preset["cases"], shape=grid, seed=0)
    say(f"2/7 manifest (4 folds; fold 0 held out for evaluation) -> {out / 'manifest.json'}")
    write_manifest(build_brats_manifest(data, name=args.data, num_folds=4, seed=0), out / "manifest.json")
    errors = [p for p in validate_manifest(out / "manifest.json", data) if p.severity == "error"]
    if errors:
        raise MedidiffError(f"the {args.data} manifest did not validate:\n" + format_problems(errors))
    say("    validated: every file opened, no problems")
    models = {}
    for label, cfg in (("3/7 base model (half resolution)", base_cfg), ("4/7 SR stage (full resolution)", sr_cfg)):
        save_resolved(cfg, out, f"{cfg.name}.yaml")
        say(f"{label}: {cfg.train.max_steps} steps on {args.device}; config -> {out / (cfg.name + '.yaml')}")
        train, export = STAGES[cfg.stage]()
        result = train(cfg, overwrite=True, progress=True)  # the demo owns --out: a re-run starts over
        n = min(20, len(result.losses))
        say(f"    loss {sum(result.losses[:n]) / n:.3f} (first {n} steps) -> "
            f"{sum(result.losses[-n:]) / n:.3f} (last {n})")
        models[cfg.stage] = export(run_dir_of(cfg), out / "models" / cfg.name)
    say(f"5/7 generating {preset['generate']} full-resolution cases (base + SR) -> {out / 'generated'}")
    code = cli(["generate", "--overwrite", "--model", str(models["diffusion"]), "--sr-model", str(models["sr"]),
                "--num", str(preset["generate"]), "--out", str(out / "generated"), "--device", args.device,
                "--no-progress"])
    if code:
        return code
    tasks = "utility,image,memorisation" + (",tissue" if args.data == "anatomy" else "")  # tissue maps: anatomy only
    say(f"6/7 evaluation ({tasks.replace(',', ', ')}) -> {out / 'report'}")
    seeds = [str(s) for s in preset["eval_seeds"]]
    code = cli(["evaluate", "--real", str(out / "manifest.json"), "--root", str(data), "--synthetic",
                str(out / "generated"), "--out", str(out / "report"), "--set", f"data.roi={list(preset['shape'])}",
                "--set", f"data.spacing={list(spacing)}", "--set", "data.fold=0", "--set", "data.label_mode=regions",
                "--steps", str(preset["eval_steps"]), "--seeds", *seeds, "--device", args.device, "--tasks", tasks,
                "--no-progress"])
    if code:
        return code
    if not args.no_pretrained:
        from medidiff.pretrained import PRETRAINED_DEMO, pretrained_folder

        card = json.loads((pretrained_folder(PRETRAINED_DEMO) / "card.json").read_text())
        say(f"7/7 2 cases from the shipped pretrained model {PRETRAINED_DEMO} ({card['summary']}) -> "
            f"{out / 'pretrained'}")
        if args.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)  # its convs are big enough for every core
        code = cli(["generate", "--overwrite", "--model", PRETRAINED_DEMO, "--num", "2", "--out", str(out / "pretrained"),
                    "--device", args.device, "--no-progress"])
        if code:
            return code
    say("done. Outputs:")
    for name, path in [(f"{args.data} data", data), ("manifest", out / "manifest.json"),
                       ("base run", run_dir_of(base_cfg)), ("SR run", run_dir_of(sr_cfg)),
                       ("models", out / "models"), ("generated cases", out / "generated"),
                       ("preview", out / "generated" / "case_0000" / "preview.png"),
                       ("evaluation report", out / "report" / "report.md"),
                       *([] if args.no_pretrained else [("pretrained preview", out / "pretrained" / "case_0000" / "preview.png")])]:
        print(f"  {name:18s} {path}")
    return 0
