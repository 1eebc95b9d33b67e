"""Tri-planar figure of the synthetic data sets: anatomy cases beside a phantom case.

Each column is one case at the BraTS grid (240x240x155, 1 mm): rows t1n, t1c, t2w, t2f, each as
axial, coronal and sagittal slices through the tumour's centroid, labels overlaid (NCR red, ED
green, ET yellow). Written for docs/data-sets.md:

    python benchmarks/data_figure.py --out docs/images/data_sets.png
"""

from __future__ import annotations

import argparse

import numpy as np

from medidiff.data.anatomy import AnatomySpec, make_anatomy_case
from medidiff.data.brats import BRATS_SHAPE, MODALITIES
from medidiff.data.phantom import case_seed, make_phantom_case
from medidiff.viz import triplanar, write_png


def column(case) -> np.ndarray:
    centre = np.argwhere(case.seg > 0).mean(axis=0).astype(int) if case.seg.any() else None
    return triplanar([case.images[m] for m in MODALITIES], case.seg, centre=centre)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--anatomy-cases", type=int, nargs="+", default=[1, 3], help="case indices (seed 0)")
    ap.add_argument("--phantom-case", type=int, default=1)
    args = ap.parse_args()
    cases = [make_anatomy_case(case_seed(0, i), tumour=True, spec=AnatomySpec()) for i in args.anatomy_cases]
    cases.append(make_phantom_case(case_seed(0, args.phantom_case), BRATS_SHAPE, tumour=True))
    cols = [column(c) for c in cases]
    gap = np.full((cols[0].shape[0], 12, 3), 255, np.uint8)
    parts = []
    for c in cols:
        parts += [c, gap]
    write_png(args.out, np.concatenate(parts[:-1], axis=1))
    print(f"wrote {args.out}: anatomy cases {args.anatomy_cases} (seed 0), phantom case {args.phantom_case}")


if __name__ == "__main__":
    main()
