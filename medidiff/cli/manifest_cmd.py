"""`medidiff manifest ...`: build MONAI/Decathlon datalists and validate them.

    medidiff manifest build brats ROOT -o data_manifests/brats23.json [--folds 5] [--seed 0]
    medidiff manifest build folder ROOT --images-glob "{case}/{case}_{modality}.nii.gz" \\
        --modalities t1 t2 --label-suffix _seg.nii.gz -o data_manifests/mine.json
    medidiff manifest validate data_manifests/brats23.json --root ROOT [--labels 0,1,2,3]

Paths in a manifest are relative to ROOT; whoever reads it passes the root again (``--root``,
``data.root``), which otherwise defaults to the folder holding the manifest.
``validate`` exits 0 when all is well, 1 when it found errors (warnings fail only with
``--strict``); user errors (no such root, no cases) exit 2 via the main entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="build and validate data manifests (MONAI datalists)")
    msub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    msub.required = True

    b = msub.add_parser("build", help="scan a data root and write a manifest")
    bsub = b.add_subparsers(dest="source", metavar="SOURCE")
    bsub.required = True

    brats = bsub.add_parser(
        "brats", help="BraTS 2021 or 2023+ release (layout auto-detected)",
        description="Scan ROOT for a BraTS 2021 (..._t1ce.nii.gz) or 2023+ (...-t1c.nii.gz, any "
        "cohort) release and write a manifest with modalities t1n,t1c,t2w,t2f, labels 0-3 "
        "(2021 gets label_map {4: 3}) and seeded, stable folds.",
    )
    _common_build_args(brats)
    brats.set_defaults(func=_build_brats)

    folder = bsub.add_parser(
        "folder", help="generic folder of NIfTI images (+ optional labels)",
        description="One case per match of --images-glob (relative to ROOT). Placeholders: {case} "
        "marks the case id (default: file name without .nii/.nii.gz); {modality} marks the "
        "modality (then list --modalities). Examples: 'images/*.nii.gz'; "
        "'{case}/{case}_{modality}.nii.gz' --modalities t1 t2. Labels: --labels-dir DIR holds "
        "<case>.nii.gz, or --label-suffix _seg.nii.gz names <case>_seg.nii.gz beside the first "
        "image. Without label options every case is an (image-only) training case.",
    )
    folder.add_argument("--images-glob", required=True, metavar="GLOB",
                        help="pattern relative to ROOT, with optional {case} and {modality}")
    lab = folder.add_mutually_exclusive_group()
    lab.add_argument("--labels-dir", metavar="DIR", help="folder (inside ROOT) of <case>.nii.gz labels")
    lab.add_argument("--label-suffix", metavar="SUF", help="label = <case><SUF> beside the first image")
    folder.add_argument("--modalities", nargs="+", metavar="NAME", help="modality names, in channel order")
    folder.add_argument("--label-values", type=_int_list, metavar="V,V,...",
                        help="allowed label values, recorded for validate (e.g. 0,1,2)")
    _common_build_args(folder)
    folder.set_defaults(func=_build_folder)

    v = msub.add_parser(
        "validate", help="open every file of a manifest and report every problem",
        description="Checks paths (missing, escaping the root), files (unreadable, truncated, not "
        "3D, NaN/Inf, all zero, too many voxels, singular affine, symlink loops), cases (shapes/affines across modalities, missing modalities, label values "
        "after label_map) and duplicates. Prints one line per problem; exit 1 on errors.",
    )
    v.add_argument("manifest", metavar="FILE")
    v.add_argument("--root", help="data root the paths are relative to (default: the manifest's folder)")
    v.add_argument("--labels", type=_int_list, metavar="V,V,...",
                   help="allowed label values after label_map (default: the manifest's labels)")
    v.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    v.add_argument("--max-voxels", type=int, help="refuse files whose header declares more voxels "
                   "(default: the pipeline's data.max_voxels default, 2**28)")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dry_run(v)
    v.set_defaults(func=_validate)

    t = msub.add_parser(
        "prompts", help="add a factual text prompt to every case (for text-conditioned models)",
        description="Writes a 'text' field per case from its label map: modalities, tumour hemisphere "
        "and lobe, sub-region volumes. Existing 'text' fields are kept unless --overwrite.",
    )
    t.add_argument("manifest", metavar="FILE")
    t.add_argument("-o", "--out", required=True, help="manifest to write (may be FILE itself)")
    t.add_argument("--root", help="data root the paths are relative to (default: the manifest's folder)")
    t.add_argument("--facts", nargs="+", choices=["modalities", "location", "volumes"],
                   default=["modalities", "location", "volumes"], help="what the prompts state")
    t.add_argument("--overwrite", action="store_true", help="replace existing 'text' fields")
    add_dry_run(t)
    t.set_defaults(func=_prompts)


def _prompts(args: argparse.Namespace) -> int:
    if dry_run(args, options_of(args)):
        return 0
    from medidiff.conditioning.prompts import add_prompts_to_manifest

    counts = add_prompts_to_manifest(args.manifest, args.out, args.root, include=args.facts, overwrite=args.overwrite)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2,3, got {text!r}") from None


def _common_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", metavar="ROOT", help="data root; manifest paths are written relative to it")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="e.g. data_manifests/NAME.json")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="fold hash seed (default 0)")
    p.add_argument("--name", help="manifest name (default: the root folder's name)")
    p.add_argument("--description")
    p.add_argument("--skip-incomplete", action="store_true",
                   help="leave out cases that lack a modality (recorded under medidiff.excluded)")
    add_dry_run(p)


def _check_folds(args: argparse.Namespace) -> None:
    if args.folds < 1:
        raise MedidiffError(f"--folds must be >= 1, got {args.folds}")


def _build_brats(args: argparse.Namespace) -> int:
    from medidiff.data.manifest import build_brats_manifest

    if dry_run(args, options_of(args)):
        return 0
    _check_folds(args)
    manifest = build_brats_manifest(
        args.root, name=args.name, description=args.description, num_folds=args.folds,
        seed=args.seed, skip_incomplete=args.skip_incomplete,
    )
    return _write(manifest, args)


def _build_folder(args: argparse.Namespace) -> int:
    from medidiff.data.manifest import build_folder_manifest

    if dry_run(args, options_of(args)):
        return 0
    _check_folds(args)
    manifest = build_folder_manifest(
        args.root, args.images_glob, modalities=args.modalities, labels_dir=args.labels_dir,
        label_suffix=args.label_suffix, label_values=args.label_values, name=args.name,
        description=args.description, num_folds=args.folds, seed=args.seed,
        skip_incomplete=args.skip_incomplete,
    )
    return _write(manifest, args)


def _write(manifest: dict[str, Any], args: argparse.Namespace) -> int:
    from medidiff.data.manifest import write_manifest

    out = write_manifest(manifest, args.output)
    meta = manifest["medidiff"]
    folds = Counter(item["fold"] for item in manifest["training"])
    per_fold = ", ".join(f"{k}: {folds[k]}" for k in range(meta["num_folds"]))
    print(
        f"wrote {out}: {meta['source_layout']}, {len(manifest['training'])} training cases "
        f"(folds {per_fold}), {len(manifest.get('test', []))} test cases, modalities "
        f"{','.join(meta['modalities'])}"
    )
    empty = [k for k in range(meta["num_folds"]) if folds[k] == 0]
    if manifest["training"] and empty:
        # Hash folds keep cases put when data is added, but balance only statistically.
        print(f"  warning: fold(s) {empty} have no cases; with this few subjects use fewer --folds",
              file=sys.stderr)
    for ex in meta["excluded"]:
        print(f"  excluded {ex['case_id']}: {ex['reason']}", file=sys.stderr)
    print(f"paths are relative to {meta['root_hint']}: pass it as --root / data.root when using the manifest")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from medidiff.data.validate import validate_manifest

    if dry_run(args, options_of(args)):
        return 0
    from medidiff.data.checks import DEFAULT_MAX_VOXELS

    problems = validate_manifest(args.manifest, root=args.root, labels=args.labels, progress=not args.no_progress,
                                 max_voxels=args.max_voxels or DEFAULT_MAX_VOXELS)
    for p in problems:
        print(p)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    cases = len({p.case_id for p in problems if p.case_id is not None})
    if errors or (warnings and args.strict):
        print(f"FAILED: {args.manifest}: {errors} error(s), {warnings} warning(s) in {cases} case(s)")
        return 1
    n = _count_cases(args.manifest)
    extra = f", {warnings} warning(s)" if warnings else ""
    print(f"OK: {args.manifest}: {n} case(s), every file readable and consistent{extra}")
    return 0


def _count_cases(path: str) -> int:
    from medidiff.data.manifest import read_manifest

    data = read_manifest(path)
    return sum(len(data.get(k) or []) for k in ("training", "validation", "test"))
