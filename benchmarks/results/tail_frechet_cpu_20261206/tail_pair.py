"""The tail step's Frechet difference, paired case by case (image_metrics.frechet_difference over the jackknife's
left-out figures), for two generated sets of the same seeds, against 128 real training cases of the 512-case set,
on the tracked feature net, with each set's mean term and mean feature spread beside the reference's.

    python tail_pair.py A_FOLDER[,A_FOLDER2...] B_FOLDER[,...] > pair.json      (B - A; folders of a set joined in
    order, so the i-th case of A and of B must share their noise)
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval.image_metrics import frechet_difference, frechet_distance, frechet_jackknife  # noqa: E402

CONFIG = HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml"
NET = HERE.parents[1] / "nets/anatomy1536_fold0/feature_net"


def main() -> None:
    a_dirs, b_dirs = ([Path(p) for p in arg.split(",")] for arg in sys.argv[1:3])
    torch.set_num_threads(2)
    real = _RealCases(CONFIG, Path("/work/s45/manifest512.json"), Path("/work/s45/anat"), 128)
    mods = list(real.dcfg.modalities)
    spacing = [float(s) * real.dcfg.downsample for s in real.dcfg.spacing]
    train = real.train.images.float()
    model, _ = feat.load_segmenter_features(NET, modalities=mods, grid=list(train.shape[2:]), spacing=spacing)
    net = feat.SegmenterFeatures(model)
    ref = feat.extract_features(net, train).numpy()
    rows = {}
    for name, dirs in (("a", a_dirs), ("b", b_dirs)):
        f = np.concatenate([feat.extract_features(net, real.synthetic(d).images.float()).numpy() for d in dirs])
        jk = frechet_jackknife(f, ref)
        full = frechet_distance(f, ref)
        rows[name] = {"folders": [str(d) for d in dirs], "frechet": full, **jk,
                      "mean_term": float(((f.mean(0) - ref.mean(0)) ** 2).sum()),
                      "feature_sd_mean": float(f.std(0).mean()), "reference_sd_mean": float(ref.std(0).mean())}
    out = {"a": {k: v for k, v in rows["a"].items() if k != "frechet_leave_one_out"},
           "b": {k: v for k, v in rows["b"].items() if k != "frechet_leave_one_out"},
           "b_minus_a": frechet_difference(rows["b"], rows["a"])}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
