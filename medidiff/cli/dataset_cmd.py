"""`medidiff export-dataset`: a generated folder (+ real training cases) as a segmentation data set.

    medidiff export-dataset nnunet GENERATED -o $nnUNet_raw --dataset-id 501 --dataset-name BraTSSyn \\
        [--real data_manifests/brats23.json --root DATA_ROOT [--real-folds 1 2 3 4] [--with-test]] [--copy]
        [--overwrite]

The layouts and the rules (which real folds may join, hard links or copies) are in
:mod:`medidiff.layouts`; ``docs/segmentation-datasets.md`` shows the nnU-Net commands that follow.
"""

from __future__ import annotations

import argparse

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError

FORMATS = ("nnunet",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-dataset", help="build an nnU-Net v2 raw data set from generated cases (+ real training cases)",
        description="Writes OUT/DatasetNNN_NAME/{imagesTr,labelsTr,dataset.json} from the finished cases of a folder "
                    "written by `medidiff generate` (any --layout), optionally mixed with the labelled real cases of a "
                    "manifest's training folds (never the fold the generator held out). Files are hard-linked where "
                    "possible, else copied.")
    p.add_argument("format", metavar="FORMAT", help=f"data set format: {', '.join(FORMATS)}")
    p.add_argument("generated", metavar="GENERATED", help="a `medidiff generate --out` folder")
    p.add_argument("-o", "--out", required=True, help="the nnUNet_raw folder; the data set goes in DatasetNNN_NAME/")
    p.add_argument("--dataset-id", required=True, help="nnU-Net data set id, 1..999")
    p.add_argument("--dataset-name", required=True, help="data set name (letters, digits, _ - .)")
    p.add_argument("--real", metavar="MANIFEST", help="add the labelled real cases of this manifest's training folds")
    p.add_argument("--root", help="data root of --real (default: the manifest's folder)")
    p.add_argument("--real-folds", type=int, nargs="+", metavar="F",
                   help="folds of --real to add (default: the folds the generator trained on; needs --real to be its "
                        "training manifest). The generator's held-out fold is refused")
    p.add_argument("--with-test", action="store_true",
                   help="also write the generator's held-out fold of --real as imagesTs/labelsTs (what the segmenter "
                        "is scored on; nnU-Net never trains on them)")
    p.add_argument("--real-only", action="store_true",
                   help="leave the synthetic cases out: the real-only baseline with the same training and test cases "
                        "(GENERATED still decides the folds)")
    p.add_argument("--modalities", nargs="+", metavar="NAME",
                   help="channel order of the generated cases when it cannot be told (default: the --real manifest's, "
                        "or t1n t1c t2w t2f)")
    p.add_argument("--copy", action="store_true", help="copy files instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DatasetNNN_NAME folder")
    add_dry_run(p)
    p.set_defaults(func=_export_dataset)


def _export_dataset(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise MedidiffError(f"export-dataset {args.format!r}: unknown format; use one of {', '.join(FORMATS)}")
    try:
        dataset_id = int(args.dataset_id)
    except ValueError:
        raise MedidiffError(f"--dataset-id {args.dataset_id!r}: nnU-Net data set ids are integers 1..999") from None
    from medidiff.layouts import NnunetLayout, export_nnunet

    layout = NnunetLayout(dataset_id, args.dataset_name)  # refuses a bad id or name before anything is read
    if dry_run(args, options_of(args)):
        return 0
    record = export_nnunet(args.generated, args.out, dataset_id, args.dataset_name, real=args.real, root=args.root,
                           real_folds=args.real_folds, modalities=args.modalities, link=not args.copy,
                           overwrite=args.overwrite, with_test=args.with_test,
                           real_only=args.real_only)
    files = ", ".join(f"{n} {k}" for k, n in sorted(record["files"].items()))
    left = record["synthetic_from"]["unfinished_left_out"]
    print(f"{layout.root(args.out)}: {record['synthetic_cases']} synthetic + {record['real_cases']} real case(s)"
          + (f", {record['test_cases']} held-out test case(s) in imagesTs" if record["test_cases"] else "")
          + f" ({files})"
          + (f"; {left} unfinished generated case(s) left out" if left else "")
          + f". Next: nnUNetv2_plan_and_preprocess -d {dataset_id} --verify_dataset_integrity")
    return 0
