"""How much the Frechet floor and the generated sets' ratio move with the reference's draw, and whether held-out
cases read further from a training-fold reference than other training-fold cases do (the net's fit), on the tracked
feature net and the 1536-case set: 10 seeded draws of 192 of the first 600 training-fold cases as the reference;
for each, the floor at 48 from evaluate's 192 held-out cases (20 subsets; median, range), the same from the other
408 training-fold cases, and the generated sets' Frechet. Writes the features to FEATURES (npz) for later reads.

    FEATURES=draws.npz python reference_draws.py CONFIG MANIFEST ROOT FEATURE_NET NAME=FOLDER[,FOLDER...] ... > draws.json
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
from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402

POOL, REF, N, DRAWS = 600, 192, 48, 10


def main() -> None:
    config, manifest, root, net_dir = (Path(a) for a in sys.argv[1:5])
    sets = named_folder_sets(sys.argv[5:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    train_items, held_items, _ = evdata.real_items(manifest, root, 0)  # fold 0 held out, as data.fold
    eval_held = evdata.seeded_subset(held_items, 192, 1)  # medidiff evaluate's, eval.max_real=192, seeds [0]
    real = _RealCases(config, manifest, root, None, train_ids=[it["case_id"] for it in train_items[:POOL]])
    net = real.feature_net(net_dir)
    f_pool = feat.extract_features(net, real.train.images.float()).numpy()
    del real.train  # (600 cases' volumes: ~10 GB)
    f_held = feat.extract_features(net, real.real("real_heldout", eval_held).images.float()).numpy()
    gens = {k: real.synthetic_features(net, v) for k, v in sets.items()}
    if os.environ.get("FEATURES"):
        np.savez_compressed(os.environ["FEATURES"], pool=f_pool, held=f_held, **{f"gen_{k}": v for k, v in gens.items()})
    rows = []
    for d in range(DRAWS):
        pick = np.sort(np.random.default_rng(1000 + d).choice(POOL, REF, replace=False))
        rest = np.setdiff1d(np.arange(POOL), pick)
        ref = f_pool[pick]
        fh = im.floor_at_count(f_held, ref, N, draws=20, seed=0)
        ft = im.floor_at_count(f_pool[rest], ref, N, draws=20, seed=0)
        row = {"draw": d, "held_out_floor": fh["frechet"], "held_out_range": fh["frechet_range"],
               "training_floor": ft["frechet"], "training_range": ft["frechet_range"],
               "sets": {k: im.frechet_distance(f, ref) for k, f in gens.items()}}
        rows.append(row)
        print(d, f"held-out floor {fh['frechet']:.2f}, training-fold floor {ft['frechet']:.2f}",
              {k: round(v, 1) for k, v in row["sets"].items()}, file=sys.stderr, flush=True)
    summary = {"held_out_floor": [min(r["held_out_floor"] for r in rows), max(r["held_out_floor"] for r in rows)],
               "training_floor": [min(r["training_floor"] for r in rows), max(r["training_floor"] for r in rows)],
               **{f"{k}_ratio_to_held_out_floor": [min(r["sets"][k] / r["held_out_floor"] for r in rows),
                                                   max(r["sets"][k] / r["held_out_floor"] for r in rows)] for k in gens}}
    json.dump({"pool": POOL, "reference": REF, "cases": N, "draws": rows, "range_over_draws": summary}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
