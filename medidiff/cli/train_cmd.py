"""`medidiff train` and `medidiff export`."""

from __future__ import annotations

import argparse
import logging

from medidiff.cli.common import add_config_args, dry_run, options_of, resolve_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diffusion model (one loop; DeepSpeed ZeRO on 1..N GPUs or the CPU)",
                       description="Train the stage an experiment config describes. Multi-GPU: "
                                   "torchrun --nproc_per_node N -m medidiff train -c X.yaml")
    add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that holds a run (deletes its checkpoints, logs and model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")
    p.set_defaults(func=_train)

    e = sub.add_parser("export", help="consolidate a run's newest checkpoint into a model folder (safetensors + JSON) "
                                      "or a MONAI bundle")
    e.add_argument("run", help="run folder (<output_dir>/<name>)")
    e.add_argument("-o", "--out", required=True, help="model folder (or bundle folder) to write")
    e.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA (default) or raw weights")
    e.add_argument("--format", choices=["model", "monai-bundle"], default="model",
                   help="model: a medidiff model folder; monai-bundle: a MONAI bundle whose inference runs "
                        "`python -m monai.bundle run --config_file configs/inference.json` (docs/monai-bundle.md)")
    e.add_argument("--sr-run", help="monai-bundle: the SR stage's run folder; the bundle generates with the cascade")
    e.add_argument("--bundle-version", help="monai-bundle: the bundle's version (metadata.json; default 0.1.0)")
    e.add_argument("--authors", help="monai-bundle: authors of the bundle (metadata.json, docs/license.txt)")
    e.add_argument("--copyright", help="monai-bundle: copyright statement of the bundle")
    e.add_argument("--dry-run", action="store_true", help="print the resolved options and exit")
    e.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    from medidiff.training.engine import NO_DEEPSPEED, resolve_deepspeed_config

    if cfg.train.deepspeed != NO_DEEPSPEED:
        # DeepSpeed's refusals (half precision at stage 0, CUDA graphs with accumulation, a missing or bad
        # JSON): one line now, not after the run folder, the data and the codec statistics
        resolve_deepspeed_config(cfg.train, None)  # the world size is known only once the processes meet
    if dry_run(args, cfg):
        return 0
    from medidiff.training.tracking import check_trackers

    check_trackers(cfg.log)  # a missing mlflow/wandb package: one line now, not after data loading
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from medidiff.errors import MedidiffError
    from medidiff.training.diffusion import run_dir_of
    from medidiff.training.stages import STAGES

    if cfg.stage not in STAGES:
        raise MedidiffError(f"stage {cfg.stage!r} cannot be trained yet (available: {sorted(STAGES)})")
    train_stage, export_run = STAGES[cfg.stage]()
    result = train_stage(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    run_dir = run_dir_of(cfg)
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return 0  # rank 0 exports and reports
    if result.final_step >= cfg.train.max_steps or result.time_limited:
        model = export_run(run_dir, run_dir / "model")
        why = f" (train.max_minutes={cfg.train.max_minutes:g} reached)" if result.time_limited else ""
        print(f"trained {result.final_step} steps ({cfg.stage}){why}; model (EMA weights): {model}")
    else:
        print(f"stopped at step {result.final_step}; resume with: medidiff train -c {args.config} --resume")
    return 0


def _export(args: argparse.Namespace) -> int:
    from medidiff.errors import MedidiffError

    if args.format != "monai-bundle":
        given = [flag for flag, value in (("--sr-run", args.sr_run), ("--bundle-version", args.bundle_version),
                                          ("--authors", args.authors), ("--copyright", args.copyright)) if value is not None]
        if given:
            raise MedidiffError(f"{given[0]} is for --format monai-bundle (this export writes a model folder)")
    if dry_run(args, options_of(args)):
        return 0
    if args.format == "monai-bundle":
        from medidiff.bundle import export_bundle

        out = export_bundle(args.run, args.out, sr_run=args.sr_run, weights=args.weights,
                            version="0.1.0" if args.bundle_version is None else args.bundle_version,
                            authors=args.authors, copyright=args.copyright)
        print(f"exported a MONAI bundle ({args.weights} weights) to {out}; run it with: cd {out} && "
              "python -m monai.bundle run --config_file configs/inference.json --num_cases 2")
        return 0
    from medidiff.training.stages import export_stage_run

    out = export_stage_run(args.run, args.out, weights=args.weights)
    print(f"exported {args.weights} weights to {out}")
    return 0
