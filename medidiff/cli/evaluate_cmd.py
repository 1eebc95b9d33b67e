"""`medidiff evaluate`: segmentation utility, mask fidelity, image metrics, memorisation audit."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import Any

from medidiff.cli.common import add_config_args, dry_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score synthetic cases against real ones (report.json, report.md, PNGs)",
        description="Evaluate a `medidiff generate` folder against the real cases of a manifest. The experiment "
                    "config's data section (use the one the model was trained with) defines the common grid; "
                    "its eval section (or --set eval.KEY=VALUE) the evaluation budget. data.fold is the "
                    "held-out real split.",
    )
    p.add_argument("--real", required=True, help="real-data manifest (medidiff manifest build)")
    p.add_argument("--root", help="data root of the manifest's relative paths (default: the manifest's folder)")
    p.add_argument("--synthetic", required=True, help="folder written by medidiff generate (case_XXXX/...)")
    p.add_argument("--out", required=True, help="report folder: report.json, report.md, *.png")
    add_config_args(p, required=False)
    p.add_argument("--seeds", type=int, nargs="+", help="segmenter seeds (eval.seeds)")
    p.add_argument("--epochs", type=int, help="most segmenter epochs per set and seed; a validation-Dice plateau "
                                              "stops earlier (eval.epochs)")
    p.add_argument("--steps", type=int, help="hard cap on segmenter optimiser steps, for quick runs (eval.steps)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (eval.device)")
    p.add_argument("--feature-weights", help="local MedicalNet-style 3D ResNet weights (eval.feature_weights)")
    p.add_argument("--feature-net", help="folder of a saved feature net (loaded), or where to save the one trained "
                                         "now, so later evaluations compare on the same features (eval.feature_net)")
    p.add_argument("--tissue-net", help="folder of a saved tissue segmenter (loaded), or where to save the one the "
                                        "tissue task trains now, so later evaluations of the same manifest and fold "
                                        "skip its training (eval.tissue_net)")
    p.add_argument("--codec", help="codec folder, or a model folder holding codec/: reconstruction PSNR/SSIM of "
                                   "held-out real cases (eval.codec)")
    p.add_argument("--tasks", help="comma list of utility,fidelity,image,memorisation,codec,tissue (eval.tasks; "
                                   "tissue needs real cases with tissue maps, as `medidiff data anatomy` writes)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)


def load_eval_configs(path: str | None, overrides: list[str] | None) -> tuple[Any, Any]:
    """``(ExperimentConfig, EvalConfig)`` from one YAML + overrides.

    The ``eval:`` section is read by :class:`EvalConfig`; while the experiment schema has no
    ``eval`` field it is split off before the strict experiment loader sees it.
    """
    from medidiff.config import apply_overrides, from_dict, load_yaml
    from medidiff.eval.config import EvalConfig
    from medidiff.experiment import ExperimentConfig

    data = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " + --set " + " ".join(overrides)
    data = apply_overrides(data, overrides)
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if "eval" in names:
        exp = from_dict(ExperimentConfig, data, source=source)
        return exp, exp.eval  # type: ignore[attr-defined]
    eval_data = data.pop("eval", None) or {}
    return from_dict(ExperimentConfig, data, source=source), from_dict(EvalConfig, eval_data, where="eval", source=source)


def _evaluate(args: argparse.Namespace) -> int:
    from medidiff.config import ConfigError, to_dict
    from medidiff.eval.config import TASKS

    exp, cfg = load_eval_configs(args.config, args.overrides)
    changes: dict[str, Any] = {}
    if args.seeds:
        changes["seeds"] = list(args.seeds)
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.device:
        changes["device"] = args.device
    if args.feature_weights:
        changes["feature_weights"] = args.feature_weights
    if args.codec:
        changes["codec"] = args.codec
    if args.feature_net:
        changes["feature_net"] = args.feature_net
    if args.tissue_net:
        changes["tissue_net"] = args.tissue_net
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise ConfigError(f"--tasks: unknown {bad}; choose from {','.join(TASKS)}")
        changes["tasks"] = tasks
    try:
        cfg = dataclasses.replace(cfg, **changes)
    except ValueError as exc:
        raise ConfigError(f"--seeds/--epochs/--steps/--tasks: {exc}") from exc
    from medidiff.eval.data import eval_data_config

    # the data pipeline evaluate reads with (eval.intensity_scale applied), not the config's as written
    resolved = {"real": args.real, "root": args.root, "synthetic": args.synthetic, "out": args.out,
                "eval": to_dict(cfg), "data": to_dict(eval_data_config(exp.data, cfg.intensity_scale))}
    if dry_run(args, resolved):
        return 0
    import logging

    from medidiff.eval import run_evaluation

    # stage lines with their wall time (as `medidiff train` logs): a long evaluation shows where it is
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = _command_of(args)
    report = run_evaluation(exp, cfg, real_manifest=args.real, synthetic_dir=args.synthetic, out_dir=args.out,
                            root=args.root, command=command, progress=not args.no_progress)
    print(f"report written to {args.out}/report.md ({len(report['figures'])} figures)")
    return 0


def _command_of(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (rebuilt from the parsed options, so it is exact
    also when called as ``main([...])`` from Python, where ``sys.argv`` is someone else's)."""
    parts = ["medidiff", "evaluate", "--real", args.real]
    if args.root:
        parts += ["--root", args.root]
    parts += ["--synthetic", args.synthetic, "--out", args.out]
    if args.config:
        parts += ["--config", args.config]
    for o in args.overrides:
        parts += ["--set", o]
    if args.seeds:
        parts += ["--seeds", *map(str, args.seeds)]
    for flag, value in (("--epochs", args.epochs), ("--steps", args.steps), ("--device", args.device),
                        ("--feature-weights", args.feature_weights), ("--codec", args.codec), ("--feature-net", args.feature_net),
                        ("--tissue-net", args.tissue_net), ("--tasks", args.tasks)):
        if value is not None:
            parts += [flag, str(value)]
    if args.no_progress:
        parts.append("--no-progress")
    return " ".join(shlex.quote(str(p)) for p in parts)


__all__ = ["register", "load_eval_configs"]
