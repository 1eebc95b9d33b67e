"""Issue 16's Frechet goal (<= 3x the real-vs-real floor at equal n) for the shipped model at 96 cases, on the CPU:
the shipped joint model's untailed Heun-30 cases, seeds 0-47 (session 50's set) and 48-95 (this session's),
through evaluate's synthetic pipeline (the corrected scale of session 51) on the tracked feature net, against
the whole training fold (features from ../frechet_reference_cpu_20261206/all_features.npz: the real pipeline did
not change since). The floor at n: held-out draws of n cases against the same training fold. Per reading: Frechet,
its jackknife interval, the ratio to the floor at that n with the ratio's interval (the interval's ends over the
floor), PRDC; at 48 each half alone (two draws of noise), at 96 both.

    python frechet96.py CONFIG MANIFEST ROOT FEATURE_NET ALL_FEATURES.npz FOLDER FOLDER > frechet96.json
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402


def main() -> None:
    config, manifest, root, net_dir, npz = (Path(a) for a in sys.argv[1:6])
    folders = [Path(a) for a in sys.argv[6:]]
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    train_items, _, _ = evdata.real_items(manifest, root, 0)
    real = _RealCases(config, manifest, root, None, train_ids=[train_items[0]["case_id"]])  # the pipeline only
    net = real.feature_net(net_dir)
    saved = np.load(npz)
    f_train, f_held = saved["train"], saved["held"]
    parts = [real.synthetic_features(net, [d]) for d in folders]  # evaluate's synthetic pipeline, a folder each
    sets = {f"half{i}": p for i, p in enumerate(parts)} | {"both": np.concatenate(parts)}
    out = {"reference": {"training_fold_cases": len(f_train), "heldout_cases": len(f_held)},
           "folders": [str(d) for d in folders], "readings": {}}
    floors = {}
    for name, f in sets.items():
        n = len(f)
        if n not in floors:
            floors[n] = (im.floor_at_count(f_held, f_train, n, draws=20, seed=0),
                         im.prdc_floor(f_held, f_train, n, draws=im.PRDC_FLOOR_DRAWS, seed=0))
        floor, prdc_floor = floors[n]
        jk = im.frechet_jackknife(f, f_train)
        fd = im.frechet_distance(f, f_train)
        lo, hi = jk["frechet_interval"]
        pr = im.prdc(f, f_train)
        out["readings"][name] = {"cases": n, "frechet": fd, "interval": jk["frechet_interval"],
                                 "floor": floor["frechet"], "floor_range": floor["frechet_range"],
                                 "ratio_to_floor": fd / floor["frechet"],
                                 "ratio_interval": [lo / floor["frechet"], hi / floor["frechet"]],
                                 "prdc": pr, "prdc_floor": prdc_floor, "prdc_reading": im.prdc_reading(pr, prdc_floor)}
    out["half1_minus_half0"] = im.frechet_difference(
        {"frechet": out["readings"]["half1"]["frechet"], **im.frechet_jackknife(sets["half1"], f_train)},
        {"frechet": out["readings"]["half0"]["frechet"], **im.frechet_jackknife(sets["half0"], f_train)})
    json.dump(out, sys.stdout, indent=1, default=float)


if __name__ == "__main__":
    main()
