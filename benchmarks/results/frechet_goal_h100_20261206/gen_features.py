"""The tracked feature net's features of generated sets (the evaluation pipeline of the shipped recipe's config, as
../frechet_reference_cpu_20261206/ read the real cases), into one npz: for reading them against
../frechet_reference_cpu_20261206/all_features.npz's real cases without carrying the volumes.

    DATA=/tmp/fg THREADS=16 python gen_features.py OUT.npz NAME=FOLDER[,FOLDER...] ...
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402

CONFIG = HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml"
NET = HERE.parents[1] / "nets/anatomy1536_fold0/feature_net"


def main() -> None:
    out = Path(sys.argv[1])
    sets = {k: [Path(p) for p in v.split(",")] for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    data = Path(os.environ.get("DATA", "/work/s45"))
    real = _RealCases(CONFIG, data / "manifest512.json", data / "anat", 1)  # the pipeline; one real case loaded
    net = real.feature_net(NET)
    feats = {k: np.concatenate([feat.extract_features(net, real.synthetic(d).images.float()).numpy() for d in v])
             for k, v in sets.items()}
    np.savez_compressed(out, **feats)
    print({k: v.shape for k, v in feats.items()})


if __name__ == "__main__":
    main()
