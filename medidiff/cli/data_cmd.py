"""`medidiff data ...` commands (filled in with the phantom generator)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data sets: write the phantom data set")
    p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
