"""Why the records' floors differ by 5x: medidiff evaluate's real selection (eval.max_real=192: seeded subsets of
192 training-fold and 192 held-out cases, evaluate's seeds 0 and 1) against the record scripts' (the first 128
training cases of the manifest), on the tracked feature net and the 1536-case set: each reference's floor at 48
(20 subsets of 48 of evaluate's 192 held-out) and the generated sets' Frechet against it; beside them the first
192 training cases and five draws of 128 of evaluate's 192 (the reference's size against its draw).

    python selection.py CONFIG MANIFEST ROOT FEATURE_NET NAME=FOLDER[,FOLDER...] ... > selection.json
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


def main() -> None:
    config, manifest, root, net_dir = (Path(a) for a in sys.argv[1:5])
    sets = named_folder_sets(sys.argv[5:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    # fold 0 held out, as the config's data.fold and the tracked net's recipe
    train_items, held_items, _ = evdata.real_items(manifest, root, 0)
    eval_train = evdata.seeded_subset(train_items, 192, 0)  # as medidiff evaluate with eval.max_real=192, seeds [0]
    eval_held = evdata.seeded_subset(held_items, 192, 1)
    ev = [it["case_id"] for it in eval_train]
    ids = {"evaluate's 192 training": ev, "first 128 training": [it["case_id"] for it in train_items[:128]],
           "first 192 training": [it["case_id"] for it in train_items[:192]]}
    # the reference's size against its draw: 128 of evaluate's 192, five seeded draws
    for d in range(5):
        pick = sorted(np.random.default_rng(100 + d).choice(len(ev), 128, replace=False).tolist())
        ids[f"128 of evaluate's 192, draw {d}"] = [ev[i] for i in pick]
    train_ids = list(dict.fromkeys(c for cases in ids.values() for c in cases))
    real = _RealCases(config, manifest, root, None, train_ids=train_ids)
    net = real.feature_net(net_dir)
    f_all = feat.extract_features(net, real.train.images.float()).numpy()
    row_of = {c: i for i, c in enumerate(train_ids)}
    refs = {name: f_all[[row_of[c] for c in cases]] for name, cases in ids.items()}
    f_held = feat.extract_features(net, real.real("real_heldout", eval_held).images.float()).numpy()
    gens = {k: real.synthetic_features(net, v) for k, v in sets.items()}
    out = {"overlap of evaluate's 192 and the first 128": len(set(ev) & set(ids["first 128 training"])),
           "references": {}}
    for name, ref in refs.items():
        floor = im.floor_at_count(f_held, ref, 48, draws=20, seed=0)
        row = {"cases": len(ref), "floor_48": floor["frechet"], "floor_range": floor["frechet_range"],
               "held_out_192_against_it": im.frechet_distance(f_held, ref), "sets": {}}
        for g, f in gens.items():
            jk = im.frechet_jackknife(f, ref)
            row["sets"][g] = {"frechet": im.frechet_distance(f, ref), "interval": jk["frechet_interval"],
                              "ratio": im.frechet_distance(f, ref) / floor["frechet"]}
        out["references"][name] = row
        print(name, f"floor {floor['frechet']:.2f} ({floor['frechet_range'][0]:.1f}-{floor['frechet_range'][1]:.1f})",
              {g: round(v["frechet"], 1) for g, v in row["sets"].items()}, file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
