"""The faint edge band and the outside haze of generated cases against real ones on the model's own grid:
per case, the share of the brain's voxels (mean over the modalities in [0, 1] >= 0.02, largest component,
holes filled) whose mean is below 0.1 (the band mask_cut.py found in the generated brains and hardly in real ones), the share of the grid
that is faintly non-zero (0 < mean < 0.02: haze), and the brain's voxel count.

    python edge_band.py CONFIG_YAML MANIFEST ROOT GEN_DIR [GEN_DIR...] > table.md   (-> edge_band.json)
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from medidiff.config import load_config
from medidiff.data.dataset import manifest_datasets

config, manifest, root, *generated = sys.argv[1:]
cfg = load_config(config)
cfg = replace(cfg, data=replace(cfg.data, manifest=manifest, root=root, cache="none", num_workers=0))


def scores(u: np.ndarray) -> dict[str, float]:  # (M, X, Y, Z) in [0, 1]
    mean = u.mean(0)
    # the brain: above the haze level, largest component, holes filled (a generated case's haze is not brain)
    lab, n = ndimage.label(ndimage.binary_fill_holes(mean >= 0.02))
    brain = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:])) if n else np.zeros(mean.shape, bool)
    return {"faint_band_share": float(((mean < 0.1) & brain).sum() / max(brain.sum(), 1)),
            "haze_share": float(((mean > 0) & (mean < 0.02)).mean()), "brain_voxels": float(brain.sum())}


_, held = manifest_datasets(cfg.data, "/tmp/edge_band_runs", divisor=1, with_label=False, train_transforms=False)
rows = {"real held-out": [scores((held[i]["image"].numpy() + 1) / 2) for i in range(min(16, len(held)))]}
for folder in generated:
    cases = sorted(p for p in Path(folder).iterdir() if p.is_dir() and p.name.startswith("case_"))
    rows[Path(folder).name] = [scores(np.stack([nib.load(c / f"{m}.nii.gz").get_fdata() for m in cfg.data.modalities]))
                               for c in cases]
summary = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} | {"cases": len(rs)} for name, rs in rows.items()}
(Path(__file__).parent / "edge_band.json").write_text(json.dumps(summary, indent=2) + "\n")
print("| set | cases | faint band share of the brain (mean < 0.1) | haze share of the grid (0 < mean < 0.02) | brain voxels |")
print("| --- | --- | --- | --- | --- |")
for name, s in summary.items():
    print(f"| {name} | {s['cases']} | {s['faint_band_share']:.4f} | {s['haze_share']:.4f} | {s['brain_voxels']:.0f} |")
