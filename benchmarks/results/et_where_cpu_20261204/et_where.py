"""Is the generated enhancing tumour too dark, or is its label off the bright voxels? Per set, on the
outside-the-tumour scale (the normal brain to [-1, 0]; quality_scale's second reading) and the evaluation grid:

- t1c in the ET label: the per-case 10th / 50th / 90th percentiles minus the normal brain's median
  (the normal brain: brain outside WT dilated 2 voxels, as tumour_contrast), median over cases;
- the same in the rest of the tumour core (TC - ET: necrosis) and in the edema (WT - TC);
- where the enhancing voxels lie: voxels of the brain whose t1c is above the normal median + half of the
  real cases' median ET contrast, as shares inside ET / in TC - ET / in WT - TC / outside WT (per case, median);
- the ET label's volume as a share of WT (median over cases with ET).

A dim image reads low at every ET percentile with the enhancing voxels in the label; a label off the bright
voxels reads a low 10th percentile with a real-like 90th, and enhancing voxels outside the label.

    python et_where.py CONFIG MANIFEST ROOT N OUT.json NAME=GENERATED...
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

from medidiff.eval.realism import brain_masks  # noqa: E402

T1C = 1  # t1n t1c t2w t2f


def per_case(images: np.ndarray, labels: np.ndarray, level: float | None) -> list[dict]:
    """One dict per case with ET (``level``: the enhancing threshold above the normal median; None: not read)."""
    masks = brain_masks(images)
    out = []
    for x, lab, brain in zip(images, labels, masks):
        wt, tc, et = (np.asarray(lab[k]) > 0.5 for k in range(3))
        if not et.any():
            continue
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2)
        v = np.asarray(x[T1C], dtype=np.float64)
        base = float(np.median(v[normal]))
        row = {"et_share_of_wt": float(et.sum() / wt.sum())}
        for name, region in (("et", et), ("necrosis", tc & ~et), ("edema", wt & ~tc)):
            vals = v[region & brain] if (region & brain).any() else v[region]
            row[name] = [float(np.percentile(vals, q)) - base for q in (10, 50, 90)] if vals.size else [np.nan] * 3
        if level is not None:
            bright = brain & (v > base + level)
            n = max(int(bright.sum()), 1)
            row["bright_voxels"] = int(bright.sum())
            for name, region in (("in_et", et), ("in_necrosis", tc & ~et), ("in_edema", wt & ~tc), ("outside_wt", ~wt)):
                row[f"bright_{name}"] = float((bright & region).sum() / n)
        out.append(row)
    return out


def write_as_generated(folder: Path, images: np.ndarray, labels: np.ndarray, spacing, modalities) -> None:
    """Cases in [-1, 1] and their WT/TC/ET masks as `medidiff generate` writes them (case_XXXX/<modality>.nii.gz,
    seg.nii.gz in BraTS 2023 codes: ET 3, the rest of TC 1, the rest of WT 2)."""
    import nibabel as nib

    affine = np.diag([*map(float, spacing), 1.0])
    for i, (x, lab) in enumerate(zip(images, labels)):
        case = folder / f"case_{i:04d}"
        case.mkdir()
        for m, v in zip(modalities, x):
            nib.save(nib.Nifti1Image(np.asarray(v, dtype=np.float32), affine), case / f"{m}.nii.gz")
        wt, tc, et = (np.asarray(lab[k]) > 0.5 for k in range(3))
        seg = np.where(et, 3, np.where(tc, 1, np.where(wt, 2, 0))).astype(np.uint8)
        nib.save(nib.Nifti1Image(seg, affine), case / "seg.nii.gz")


def summary(rows: list[dict]) -> dict:
    s = {"cases_with_et": len(rows)}
    for key in rows[0]:
        vals = np.asarray([r[key] for r in rows], dtype=np.float64)
        s[key] = np.round(np.nanmedian(vals, axis=0), 3).tolist()
    return s


def main() -> None:
    config, manifest, root, n, out, *sets = sys.argv[1:]
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n), normal_brain_scale_overrides())

    def arrays(case_set) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(case_set.images), np.asarray(case_set.labels)

    ri, rl = arrays(real.train)
    level = 0.5 * float(np.median([r["et"][1] for r in per_case(ri, rl, None)]))
    result = {"enhancing_level_above_normal_median": level, "real_train": summary(per_case(ri, rl, level)),
              "real_heldout": summary(per_case(*arrays(real.heldout), level))}
    # the known answer: the held-out real cases as a model trained on the shipped scale sees them (each case's
    # brain 0.5-99.5th percentiles to [-1, 1], clipped: t1c's enhancing tumour holds most of the top 0.5 %),
    # written as a generated set and read like one
    shipped = _RealCases(Path(config), Path(manifest), Path(root), int(n), eval_scale_overrides())
    with tempfile.TemporaryDirectory() as tmp:
        write_as_generated(Path(tmp), *arrays(shipped.heldout), shipped.dcfg.spacing, shipped.dcfg.modalities)
        result["real_heldout_through_the_shipped_scale"] = summary(per_case(*arrays(real.synthetic(Path(tmp))), level))
    for s in sets:
        name, folder = s.split("=", 1)
        result[name] = summary(per_case(*arrays(real.synthetic(Path(folder))), level))
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
