"""The tail step's Frechet difference, paired case by case (image_metrics.frechet_difference over the jackknife's
left-out figures), for two generated sets of the same seeds, against 128 real training cases of the 512-case set,
on the tracked feature net, with each set's mean term and mean feature spread beside the reference's.

    python tail_pair.py A_FOLDER[,A_FOLDER2...] B_FOLDER[,...] > pair.json      (B - A; folders of a set joined in
    order, so the i-th case of A and of B must share their noise)

The real set is read from $DATA (default /work/s45: manifest512.json and anat/), with $THREADS CPU threads (default 2).
With PRDC=1 (session 47) each set also gets precision / recall / density / coverage against the reference, and the
real held-out fold's floor at the set's size beside them (Frechet and prdc; medidiff evaluate's image task's rules).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402
from medidiff.eval.image_metrics import frechet_difference, frechet_distance, frechet_jackknife  # noqa: E402

CONFIG = HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml"
NET = HERE.parents[1] / "nets/anatomy1536_fold0/feature_net"


def real_cases_and_net(n_real: int) -> tuple[_RealCases, feat.SegmenterFeatures, np.ndarray]:
    """The first ``n_real`` real training and held-out cases of $DATA's 512-case set, the tracked feature net and
    the training cases' features (../tail_pair_h200_20261206/floor.py reads more of them)."""
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    data = Path(os.environ.get("DATA", "/work/s45"))
    real = _RealCases(CONFIG, data / "manifest512.json", data / "anat", n_real)
    net = real.feature_net(NET)
    return real, net, feat.extract_features(net, real.train.images.float()).numpy()


def main() -> None:
    a_dirs, b_dirs = ([Path(p) for p in arg.split(",")] for arg in sys.argv[1:3])
    real, net, ref = real_cases_and_net(128)
    rows, f_sets = {}, {}
    for name, dirs in (("a", a_dirs), ("b", b_dirs)):
        f = f_sets[name] = real.synthetic_features(net, dirs)
        jk = frechet_jackknife(f, ref)
        full = frechet_distance(f, ref)
        rows[name] = {"folders": [str(d) for d in dirs], "frechet": full, **jk,
                      "mean_term": float(((f.mean(0) - ref.mean(0)) ** 2).sum()),
                      "feature_sd_mean": float(f.std(0).mean()), "reference_sd_mean": float(ref.std(0).mean())}
    out = {"a": {k: v for k, v in rows["a"].items() if k != "frechet_leave_one_out"},
           "b": {k: v for k, v in rows["b"].items() if k != "frechet_leave_one_out"},
           "b_minus_a": frechet_difference(rows["b"], rows["a"])}
    if os.environ.get("PRDC") == "1":
        # the held-out fold: cases neither the model nor the tracked feature net trained on, as the generated ones
        held = feat.extract_features(net, real.heldout.images.float()).numpy()
        n = len(f_sets["a"])
        floor = im.floor_at_count(held, ref, n, draws=20, seed=0)
        out["floor"] = {"frechet": floor, "prdc": im.prdc_floor(held, ref, n, draws=im.PRDC_FLOOR_DRAWS, seed=0)}
        for name in ("a", "b"):
            pr = im.prdc(f_sets[name], ref)
            out[name]["prdc"] = pr
            out[name]["prdc_reading"] = im.prdc_reading(pr, out["floor"]["prdc"])
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
