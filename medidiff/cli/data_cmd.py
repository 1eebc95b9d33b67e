"""`medidiff data ...` commands: ``data phantom`` (procedural heads, for exercising code) and
``data anatomy`` (MNI152 anatomy varied per case, for judging realism)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medidiff.cli.common import add_dry_run, dry_run, options_of


def register(sub: argparse._SubParsersAction) -> None:
    from medidiff.data.phantom import DEFAULT_SHAPE

    p = sub.add_parser("data", help="data sets: write the phantom or the anatomy data set")
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
    _add_set_args(ph, "phantom", DEFAULT_SHAPE, "each >= 16 (default %(default)s; BraTS is 240 240 155)")
    ph.add_argument(
        "--keep-skull", action="store_true", help="keep scalp and skull (default: skull-stripped like BraTS)"
    )
    add_dry_run(ph)
    ph.set_defaults(func=_phantom)

    an = dsub.add_parser(
        "anatomy",
        help="write BraTS-like cases from the MNI152 template (real anatomy, varied per case)",
        description=(
            "Write OUT/BraTS-GLI-%%05d-000/BraTS-GLI-%%05d-000-{t1n,t1c,t2w,t2f,seg,tissue}.nii.gz "
            "from nilearn's shipped MNI152 template (no download): random affine, smooth "
            "deformation, ventricle size and a tumour per case; skull-stripped, BraTS affine; "
            "OUT/anatomy.json records the parameters. tissue: 0 background, 1 CSF, 2 GM, 3 WM "
            "(the tumour is in seg only). Case i depends only on (seed, i). Re-running on an "
            "anatomy folder overwrites it."
        ),
    )
    _add_set_args(
        an,
        "anatomy",
        (240, 240, 155),
        "each >= 24 (default %(default)s, the BraTS grid); smaller grids resample the template into "
        "the BraTS field of view",
    )
    an.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size in mm, 1 or 3 numbers (default: the 240x240x155 mm BraTS field of view / shape)",
    )
    add_dry_run(an)
    an.set_defaults(func=_anatomy)


def _add_set_args(p: argparse.ArgumentParser, kind: str, shape: tuple[int, ...], shape_help: str) -> None:
    """Arguments every synthetic data set takes (one place, so the two commands read alike)."""
    p.add_argument("out", metavar="OUT", help=f"output folder (new, empty, or an earlier {kind} set)")
    p.add_argument("--cases", type=int, required=True, metavar="N", help="number of cases (>= 1)")
    p.add_argument("--shape", type=int, nargs=3, default=list(shape), metavar=("X", "Y", "Z"), help=f"grid size, {shape_help}")
    p.add_argument("--seed", type=int, default=0, help="base seed (default %(default)s)")
    p.add_argument(
        "--tumour-fraction",
        type=float,
        default=0.8,
        metavar="F",
        help="probability that a case has a tumour (default %(default)s: ~1 in 5 tumour-free)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes making and writing cases (default %(default)s; the same files for any N)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _phantom(args: argparse.Namespace) -> int:
    from medidiff.config import to_dict
    from medidiff.data.phantom import PhantomSpec, check_dataset_args, write_phantom_dataset

    # Validate before --dry-run so a dry run also catches bad arguments.
    check_dataset_args(args.cases, args.seed, args.workers)
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
        workers=args.workers,
    )
    manifest = Path(args.out) / "phantom.json"
    print(f"wrote {len(folders)} phantom cases to {args.out} (parameters in {manifest})")
    return 0


def _anatomy(args: argparse.Namespace) -> int:
    from medidiff.config import to_dict
    from medidiff.data.anatomy import AnatomyError, AnatomySpec, write_anatomy_dataset
    from medidiff.data.synthetic_set import check_dataset_args

    check_dataset_args(args.cases, args.seed, args.workers)
    if args.spacing is not None and len(args.spacing) not in (1, 3):
        raise AnatomyError(f"--spacing takes 1 or 3 numbers (mm), got {len(args.spacing)}")
    spacing = None if args.spacing is None else tuple(args.spacing * 3 if len(args.spacing) == 1 else args.spacing)
    spec = AnatomySpec(shape=tuple(args.shape), spacing=spacing, tumour_fraction=args.tumour_fraction)
    resolved = {**options_of(args), "out": str(Path(args.out)), "spec": to_dict(spec)}
    if dry_run(args, resolved):
        return 0
    folders = write_anatomy_dataset(args.out, args.cases, seed=args.seed, spec=spec, progress=not args.no_progress,
                                    workers=args.workers)
    print(f"wrote {len(folders)} anatomy cases to {args.out} (parameters in {Path(args.out) / 'anatomy.json'})")
    return 0
