"""The control for rescale_check.py: real training cases written as `medidiff generate` writes a case ((x + 1) / 2
into [0, 1], the generated cases' affine, the label map from the WT/TC/ET masks) and read back through evaluate's
synthetic pipeline (quality_common._RealCases.synthetic). If evaluate's per-case rescale keeps a real case's t1c
normal-brain level (as written: about -0.3), the generated cases' +0.06 after it is theirs to explain; if it moves
the real cases too, the rescale of written cases is an evaluation artefact.

    python written_real_control.py N OUT_FOLDER > written_real_control.txt
"""
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.data.brats import regions_to_labels  # noqa: E402
from medidiff.eval.realism import brain_masks  # noqa: E402

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
R = HERE.parent


def normal_levels(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    masks = brain_masks(images)
    out = np.zeros((len(images), images.shape[1]))
    for i, (x, lab, brain) in enumerate(zip(images, labels, masks)):
        wt = np.asarray(lab[0]) > 0.5
        normal = brain & ~ndimage.binary_dilation(wt, iterations=2) if wt.any() else brain
        out[i] = [np.median(x[c][normal]) for c in range(len(x))]
    return out


def main() -> None:
    n, folder = int(sys.argv[1]), Path(sys.argv[2])
    real = _RealCases(R / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml",
                      R / "quality_scale_h200_20261205/manifest.json", Path("/work/s47/anat1536"), n,
                      eval_scale_overrides())
    images, labels = np.asarray(real.train.images), np.asarray(real.train.labels)
    affine = nib.load("/work/s46/gen_tail0/case_0000/t1c.nii.gz").affine
    for i in range(len(images)):
        case = folder / f"case_{i:04d}"
        case.mkdir(parents=True, exist_ok=True)
        for c, m in enumerate(MODALITIES):
            nib.save(nib.Nifti1Image(((images[i, c] + 1) / 2).astype(np.float32), affine), case / f"{m}.nii.gz")
        seg = np.asarray(regions_to_labels(real.train.labels[i])).astype(np.uint8)
        nib.save(nib.Nifti1Image(seg, affine), case / "seg.nii.gz")
    back = real.synthetic(folder)
    before = normal_levels(images, labels)
    after = normal_levels(np.asarray(back.images), np.asarray(back.labels))
    print(f"{len(images)} real training cases; normal-brain median per modality {MODALITIES}, median over cases")
    print("as loaded (the training scale):  ", np.median(before, 0).round(3))
    print("written and read back by evaluate:", np.median(after, 0).round(3))
    for c, m in enumerate(MODALITIES):
        k, b = np.polyfit(images[:, c].ravel(), np.asarray(back.images)[:, c].ravel(), 1)
        print(f"  {m}: read back = {k:.3f} x as loaded + {b:.3f} (all voxels, all cases)")


if __name__ == "__main__":
    main()
