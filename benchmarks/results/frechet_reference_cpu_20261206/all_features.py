"""Every real case's features on the tracked feature net (the 1536-case set's 1164 training-fold and 372 held-out
cases, loaded 200 at a time so the volumes never sit in memory together) and the generated sets', into one npz;
then the floor and the generated sets' ratio with the whole training fold as the reference, beside 100 seeded
draws of 192 of it (evaluate's eval.max_real=192 is one such draw).

    python all_features.py CONFIG MANIFEST ROOT FEATURE_NET OUT.npz NAME=FOLDER[,FOLDER...] ... > full.json
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

CHUNK, N, DRAWS, REF = 200, 48, 100, 192


def main() -> None:
    config, manifest, root, net_dir, out = (Path(a) for a in sys.argv[1:6])
    sets = named_folder_sets(sys.argv[6:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    train_items, held_items, _ = evdata.real_items(manifest, root, 0)  # fold 0 held out, as data.fold
    real = _RealCases(config, manifest, root, None, train_ids=[train_items[0]["case_id"]])  # the pipeline
    net = real.feature_net(net_dir)
    parts = {"train": [], "held": []}
    for side, items in (("train", train_items), ("held", held_items)):
        for i in range(0, len(items), CHUNK):
            cases = real.real(f"real_{side}", items[i:i + CHUNK])
            parts[side].append(feat.extract_features(net, cases.images.float()).numpy())
            print(side, i + len(items[i:i + CHUNK]), "of", len(items), file=sys.stderr, flush=True)
    f_train, f_held = np.concatenate(parts["train"]), np.concatenate(parts["held"])
    gens = {k: real.synthetic_features(net, v) for k, v in sets.items()}
    np.savez_compressed(out, train=f_train, held=f_held, train_ids=[it["case_id"] for it in train_items],
                        held_ids=[it["case_id"] for it in held_items], **{f"gen_{k}": v for k, v in gens.items()})
    full_floor = im.floor_at_count(f_held, f_train, N, draws=20, seed=0)
    res = {"whole training fold": {"reference": len(f_train), "floor": full_floor["frechet"],
                                   "floor_range": full_floor["frechet_range"],
                                   **{k: {"frechet": im.frechet_distance(f, f_train),
                                          "interval": im.frechet_jackknife(f, f_train)["frechet_interval"],
                                          "ratio": im.frechet_distance(f, f_train) / full_floor["frechet"]}
                                      for k, f in gens.items()}}}
    draws = []
    for d in range(DRAWS):
        ref = f_train[np.sort(np.random.default_rng(2000 + d).choice(len(f_train), REF, replace=False))]
        fl = im.floor_at_count(f_held, ref, N, draws=20, seed=0)["frechet"]
        draws.append({"floor": fl, **{k: im.frechet_distance(f, ref) for k, f in gens.items()}})
    q = lambda v: [float(np.percentile(v, p)) for p in (0, 5, 50, 95, 100)]  # noqa: E731
    res[f"{DRAWS} draws of {REF}"] = {"percentiles": [0, 5, 50, 95, 100], "floor": q([d["floor"] for d in draws]),
                                      **{k: q([d[k] for d in draws]) for k in gens},
                                      **{f"{k}_ratio": q([d[k] / d["floor"] for d in draws]) for k in gens}}
    json.dump(res, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
