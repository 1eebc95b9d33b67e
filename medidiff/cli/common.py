"""Shared CLI plumbing: config options, --dry-run, resolved-config printing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from medidiff.config import dump_yaml, load_config, to_dict


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved options/config and exit"
    )


def add_config_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--config", "-c", required=required, help="experiment YAML (configs/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, repeatable, e.g. --set train.micro_batch=2",
    )
    add_dry_run(parser)


def resolve_config(args: argparse.Namespace, schema: type | None = None) -> Any:
    return load_config(getattr(args, "config", None), getattr(args, "overrides", None), schema)


def dry_run(args: argparse.Namespace, resolved: Any) -> bool:
    """If --dry-run was given, print ``resolved`` (a config or a dict of options) and return True."""
    if not getattr(args, "dry_run", False):
        return False
    plain = to_dict(resolved)
    if isinstance(plain, dict):
        sys.stdout.write(dump_yaml(plain))
    else:
        sys.stdout.write(json.dumps(plain, indent=2) + "\n")
    return True


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options of a command without argparse internals (for --dry-run)."""
    skip = {"func", "dry_run", "command", "subcommand"}
    return {k: v for k, v in vars(args).items() if k not in skip and not k.startswith("_")}


def run_script(main_fn: Any) -> int:
    """Run a script's ``main()`` the way the CLI does: a user error (bad data, bad config, bad
    ``--set``) prints one line naming the file or key and exits with status 2; bugs keep their
    traceback. For pipelines/ recipes and benchmarks."""
    from medidiff.errors import MedidiffError

    try:
        return int(main_fn() or 0)
    except MedidiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def recipe_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every pipelines/ recipe takes: --data, --out, --set, --smoke, --dry-run, and
    --resume/--overwrite for a run folder that an earlier call used (as `medidiff train`)."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--data", help="BraTS folder or manifest JSON (default: phantom cases on the config's grid)")
    p.add_argument("--out", required=True, help="output folder: manifest, runs/, models/, generated/, report/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the recipe runs (seconds, CPU)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config(s) and exit")
    p.add_argument("--resume", action="store_true", help="continue the runs an earlier call left in --out")
    p.add_argument("--overwrite", action="store_true", help="delete the runs an earlier call left in --out first")
    return p
