"""`medidiff manifest ...` commands (filled in with the manifest builders)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="build and validate data manifests")
    p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
