"""Is the under-dispersion the sampler's? (issue 16; CPU, 2026-12-05). The shipped model's brains vary half as
much as real in size and per-case intensity level (shape_stats.py). A deterministic ODE sampler with an x0 net
that is not yet exact pulls the coarse band toward its conditional mean at high noise; fresh noise at each step
(Euler with eta 1) does not. For each generated folder: brain volume and normal-brain level spread over cases,
and precision / recall / density / coverage on the tracked feature net beside their floor at the folder's count.

    python sampler_spread.py CONFIG MANIFEST ROOT FEATURE_NET N_REAL NAME=FOLDER [NAME=FOLDER ...] > spread.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval.image_metrics import PRDC_FLOOR_DRAWS, prdc, prdc_floor  # noqa: E402
from medidiff.eval.realism import brain_masks  # noqa: E402


def spread(images: torch.Tensor, labels: torch.Tensor, mods: list[str]) -> dict:
    brain = brain_masks(images.float())
    x = images.float().numpy()
    normal = brain & ~labels[:, 0].bool().numpy()
    vol = brain.reshape(len(brain), -1).sum(1)
    out = {"brain_voxels_mean": float(vol.mean()), "brain_voxels_sd": float(vol.std(ddof=1))}
    for c, m in enumerate(mods):
        med = np.array([np.median(x[i, c][normal[i]]) for i in range(len(x))])
        out[f"level_{m}_mean"], out[f"level_{m}_sd"] = float(med.mean()), float(med.std(ddof=1))
    return out


def main() -> None:
    config, manifest, root, feature_dir, n_real = sys.argv[1:6]
    folders = dict(a.split("=", 1) for a in sys.argv[6:])
    torch.set_num_threads(2)
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n_real))
    mods = list(real.dcfg.modalities)
    spacing = [float(s) * real.dcfg.downsample for s in real.dcfg.spacing]
    model, _ = feat.load_segmenter_features(feature_dir, modalities=mods, grid=list(real.train.images.shape[2:]),
                                            spacing=spacing)
    net = feat.SegmenterFeatures(model)
    f_ref = feat.extract_features(net, real.train.images.float())
    f_held = feat.extract_features(net, real.heldout.images.float())
    out = {"real_train": len(real.train), "real_heldout": len(real.heldout), "runs": {},
           "real_heldout_spread": spread(real.heldout.images, real.heldout.labels, mods)}
    floors = {}
    for name, folder in folders.items():
        syn = real.synthetic(Path(folder))
        n = len(syn)
        if n not in floors:
            floors[n] = prdc_floor(f_held, f_ref, n, draws=PRDC_FLOOR_DRAWS, seed=0)
        out["runs"][name] = {"folder": folder, "cases": n, **spread(syn.images, syn.labels, mods),
                             "prdc": prdc(feat.extract_features(net, syn.images.float()), f_ref), "prdc_floor": floors[n]}
        r = out["runs"][name]
        print(name, n, round(r["brain_voxels_sd"]), {k: round(v, 3) for k, v in r["prdc"].items() if k not in ("n", "k")},
              file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
