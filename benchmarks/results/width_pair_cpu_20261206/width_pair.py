"""Issue 16's 25 MB budget: the small second stage (net.channels [32, 64, 128]) against the full-size one, both
trained 8 minutes side by side on one H100 (../small_pair_h100_20261206/), read on CPU on the same 48 label maps
(the shipped joint model's, seeds 0-47, ../tail_frechet_cpu_20261206/) with the same noise seeds (48-95): Frechet on
the tracked feature net against the whole training fold (1164 cases; features from
../frechet_reference_cpu_20261206/all_features.npz), each with its jackknife interval, the held-out floor at 48,
PRDC beside its floor, and the paired differences (image_metrics.frechet_difference: case i left out of both).
The shipped joint model's own images for those labels (the npz's gen_tail0) are the third row.

    python width_pair.py CONFIG MANIFEST ROOT FEATURE_NET ALL_FEATURES.npz NAME=FOLDER ... > width_pair.json
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases, named_folder_sets  # noqa: E402

from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402

N = 48


def main() -> None:
    config, manifest, root, net_dir, npz = (Path(a) for a in sys.argv[1:6])
    sets = named_folder_sets(sys.argv[6:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    train_items, _, _ = evdata.real_items(manifest, root, 0)
    real = _RealCases(config, manifest, root, None, train_ids=[train_items[0]["case_id"]])  # the pipeline only
    net = real.feature_net(net_dir)
    saved = np.load(npz)
    f_train, f_held = saved["train"], saved["held"]
    feats = {"joint_shipped": saved["gen_tail0"], **{k: real.synthetic_features(net, v) for k, v in sets.items()}}
    floor = im.floor_at_count(f_held, f_train, N, draws=20, seed=0)
    prdc_floor = im.prdc_floor(f_held, f_train, N, draws=im.PRDC_FLOOR_DRAWS, seed=0)
    rows, out = {}, {"reference": {"training_fold_cases": len(f_train), "heldout_cases": len(f_held)},
                     "floor_at_48": {"frechet": floor["frechet"], "range": floor["frechet_range"], "prdc": prdc_floor},
                     "sets": {}}
    for name, f in feats.items():
        assert len(f) == N, (name, len(f))
        rows[name] = {"frechet": im.frechet_distance(f, f_train), **im.frechet_jackknife(f, f_train)}
        pr = im.prdc(f, f_train)
        out["sets"][name] = {"frechet": rows[name]["frechet"], "interval": rows[name]["frechet_interval"],
                             "ratio_to_floor": rows[name]["frechet"] / floor["frechet"], "prdc": pr,
                             "prdc_reading": im.prdc_reading(pr, prdc_floor)}
    names = list(feats)
    out["paired_differences"] = {f"{a} - {b}": im.frechet_difference(rows[a], rows[b])
                                 for i, a in enumerate(names) for b in names[i + 1:]}
    json.dump(out, sys.stdout, indent=1, default=float)


if __name__ == "__main__":
    main()
