"""Where are a set's brightest voxels outside the tumour? Per modality (t1c first), on the shipped intensity scale
and the evaluation grid, for generated and real cases: the brain's brightest 0.5 % (realism's TOP_QUANTILE) that lie
outside WT dilated 2 voxels ("stray"), read per case as

- share: stray voxels over the top 0.5 % (1 - top_in_tumour);
- spots: their 26-connected components, and the largest one's share of them (one blob or scattered grain);
- distance to WT (voxels; the distance transform of not-WT) and to the brain's edge (of the brain mask), medians;
- what tissue they sit in: the other modalities' values there minus the normal brain's median (t2w high:
  CSF-like; t1n high: WM-like).

    python stray.py CONFIG MANIFEST ROOT N OUT.json NAME=GENERATED...

N real training and N held-out cases are read beside the generated sets (the held-out ones through the same
pipeline: the floor of what real cases show).
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval.realism import TOP_QUANTILE, brain_masks  # noqa: E402

MODALITIES = ["t1n", "t1c", "t2w", "t2f"]


def per_case(images: np.ndarray, labels: np.ndarray) -> dict[str, list[dict]]:
    """Per modality, one dict per case with stray voxels."""
    masks = brain_masks(images)
    out: dict[str, list[dict]] = {m: [] for m in MODALITIES}
    for x, lab, brain in zip(images, labels, masks):
        wt = np.asarray(lab[0]) > 0.5
        if not brain.any():
            continue
        near = ndimage.binary_dilation(wt, iterations=2)
        normal = brain & ~near
        to_wt = ndimage.distance_transform_edt(~wt) if wt.any() else np.full(wt.shape, np.inf)
        to_edge = ndimage.distance_transform_edt(brain)
        for c, mod in enumerate(MODALITIES):
            v = x[c]
            top = brain & (v >= np.quantile(v[brain], TOP_QUANTILE))
            stray = top & ~near
            if not stray.any():
                out[mod].append({"share": 0.0})
                continue
            comp, n = ndimage.label(stray, structure=np.ones((3, 3, 3)))
            sizes = np.bincount(comp.ravel())[1:]
            tissue = {o: float(np.median(x[k][stray]) - np.median(x[k][normal])) for k, o in enumerate(MODALITIES)
                      if o != mod}
            out[mod].append({"share": float(stray.sum() / top.sum()), "spots": int(n),
                             "largest_spot_share": float(sizes.max() / sizes.sum()),
                             "to_wt_median": float(np.median(to_wt[stray])) if wt.any() else None,
                             "to_edge_median": float(np.median(to_edge[stray])), "tissue": tissue})
    return out


def summary(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians over cases (over cases with stray voxels for everything but the share)."""
    out = {}
    for mod, cases in rows.items():
        with_stray = [c for c in cases if c["share"] > 0]
        med = lambda key: float(np.median([c[key] for c in with_stray if c.get(key) is not None])) if with_stray else None  # noqa: E731
        out[mod] = {"cases": len(cases), "cases_with_stray": len(with_stray),
                    "share_median": float(np.median([c["share"] for c in cases])) if cases else None,
                    "spots_median": med("spots"), "largest_spot_share_median": med("largest_spot_share"),
                    "to_wt_median": med("to_wt_median"), "to_edge_median": med("to_edge_median"),
                    "tissue_median": {o: float(np.median([c["tissue"][o] for c in with_stray]))
                                      for o in MODALITIES if o != mod} if with_stray else None}
    return out


def main() -> None:
    config, manifest, root, n, out, *sets = sys.argv[1:]
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n), eval_scale_overrides())
    result = {"real_training": summary(per_case(real.train.images.numpy(), real.train.labels.numpy())),
              "real_heldout": summary(per_case(real.heldout.images.numpy(), real.heldout.labels.numpy()))}
    for name, folder in (s.split("=", 1) for s in sets):
        gen = real.synthetic(Path(folder))
        result[name] = summary(per_case(gen.images.numpy(), gen.labels.numpy()))
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v["t1c"] for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
