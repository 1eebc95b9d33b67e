"""`medidiff data ...` commands: ``data phantom`` writes the embedded default data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from medidiff.cli.common import add_dry_run, dry_run, options_of


def register(sub: argparse._SubParsersAction) -> None:
    from medidiff.data.phantom import DEFAULT_SHAPE

    p = sub.add_parser("data", help="data sets: write the phantom data set")
    dsub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    dsub.required = True  # `medidiff data` alone is a usage error, not a crash

    ph = dsub.add_parser(
        "phantom",
        help="write procedural BraTS-like phantom heads (BraTS 2023 layout)",
        description=(
            "Write OUT/BraTS-GLI-%%05d-000/BraTS-GLI-%%05d-000-{t1n,t1c,t2w,t2f,seg}.nii.gz "
            "synthetic heads (skull-stripped, 1 mm, BraTS affine) and OUT/phantom.json. "
            "Case i depends only on (seed, i). Re-running on a phantom folder overwrites it."
        ),
    )
    ph.add_argument("out", metavar="OUT", help="output folder (new, empty, or an earlier phantom set)")
    ph.add_argument("--cases", type=int, required=True, metavar="N", help="number of cases (>= 1)")
    ph.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(DEFAULT_SHAPE),
        metavar=("X", "Y", "Z"),
        help="grid size, each >= 16 (default %(default)s; BraTS is 240 240 155)",
    )
    ph.add_argument("--seed", type=int, default=0, help="base seed (default %(default)s)")
    ph.add_argument(
        "--tumour-fraction",
        type=float,
        default=0.8,
        metavar="F",
        help="probability that a case has a tumour (default %(default)s: ~1 in 5 tumour-free)",
    )
    ph.add_argument(
        "--keep-skull", action="store_true", help="keep scalp and skull (default: skull-stripped like BraTS)"
    )
    ph.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dry_run(ph)
    ph.set_defaults(func=_phantom)


def _phantom(args: argparse.Namespace) -> int:
    from medidiff.config import to_dict
    from medidiff.data.phantom import PhantomSpec, check_dataset_args, write_phantom_dataset

    # Validate before --dry-run so a dry run also catches bad arguments.
    check_dataset_args(args.cases, args.seed)
    spec = PhantomSpec(
        shape=tuple(args.shape), tumour_fraction=args.tumour_fraction, skull_strip=not args.keep_skull
    )
    resolved = {**options_of(args), "out": str(Path(args.out)), "spec": to_dict(spec)}
    if dry_run(args, resolved):
        return 0
    folders = write_phantom_dataset(
        args.out,
        args.cases,
        shape=spec.shape,
        seed=args.seed,
        tumour_fraction=spec.tumour_fraction,
        progress=not args.no_progress,
        skull_strip=spec.skull_strip,
    )
    manifest = Path(args.out) / "phantom.json"
    print(f"wrote {len(folders)} phantom cases to {args.out} (parameters in {manifest})")
    return 0
