"""The ``medidiff`` command: one entry point, one sub-command module per family.

Each module in ``COMMANDS`` has ``register(subparsers)`` which adds its sub-commands and sets
``func`` on them. Errors that are the user's to fix (bad data, bad config) print one line naming
the file and problem and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medidiff import __version__
from medidiff.cli import (data_cmd, dataset_cmd, demo_cmd, evaluate_cmd, generate_cmd, latents_cmd, manifest_cmd,
                          train_cmd)
from medidiff.errors import MedidiffError
from medidiff.files import terminate_on_sigterm

COMMANDS = [demo_cmd, data_cmd, manifest_cmd, latents_cmd, train_cmd, generate_cmd, dataset_cmd, evaluate_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medidiff",
        description="Train 3D diffusion models of medical volumes, generate and evaluate synthetic NIfTI.",
    )
    parser.add_argument("--version", action="version", version=f"medidiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    terminate_on_sigterm()  # SIGTERM unwinds like Ctrl-C, so temporary files are removed
    try:
        code = int(args.func(args) or 0)
    except MedidiffError as exc:
        print(f"medidiff: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("medidiff: interrupted", file=sys.stderr)
        code = 130
    if "torch" in sys.modules:  # only a command that imported torch can hold a process group
        from medidiff.training.engine import exit_distributed

        code = exit_distributed(code)  # a torchrun rank leaves here (os._exit); one process returns
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
