"""The Frechet goal's ratio read against a reference the feature net never trained on (issue 16; CPU, session 47).

The tracked feature net (benchmarks/nets/anatomy1536_fold0) trained on all 1164 training-fold cases of the 1536-case
anatomy set, and the records read generated sets against 128 of those same cases (the reference), with the held-out
fold as the floor. ../tail_pair_h200_20261206/floor.py found other training cases 3x closer to that reference than
held-out ones: the net places the cases it trained on together. Here each generated set is read against two
references of 128 cases:

* seen: training cases 0-127 (the records' reference), the floor from held-out cases 128-371;
* unseen: held-out cases 0-127, the floor from held-out cases 128-371 (real cases the net never saw on both sides,
  as the generated ones are);

and, for scale, the training cases 128-371 against the seen reference (seen against seen). Each floor: the median
and range of 20 subsets of the generated set's size; precision / recall / coverage beside their floors (100
subsets), as medidiff evaluate reads them.

    python unseen_reference.py CONFIG MANIFEST ROOT FEATURE_NET NAME=FOLDER[,FOLDER...] ... > unseen.json

(Session 47; with selection.py and reference_draws.py beside it: this folder was unseen_reference_cpu_20261206
while they ran.)
"""
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases, named_folder_sets  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402

N_REF = 128
DRAWS = 20


def main() -> None:
    config, manifest, root, net_dir = (Path(a) for a in sys.argv[1:5])
    sets = named_folder_sets(sys.argv[5:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    real = _RealCases(config, manifest, root, 372)  # 372: the held-out fold's size in the 1536-case set
    train, held = real.train.images.float(), real.heldout.images.float()
    seen_by_net = set(json.loads((net_dir / "config.json").read_text())["recipe"].get("train_cases") or [])
    net = real.feature_net(net_dir)
    f_train, f_held = feat.extract_features(net, train).numpy(), feat.extract_features(net, held).numpy()
    ids = {"train": list(real.train.case_ids), "held": list(real.heldout.case_ids)}
    refs = {"seen": f_train[:N_REF], "unseen": f_held[:N_REF]}
    pool_held, pool_train = f_held[N_REF:], f_train[N_REF:]
    out = {"feature_net": str(net_dir), "reference_cases": N_REF, "held_out_pool": len(pool_held),
           "net_trained_on": {"seen reference": sum(c in seen_by_net for c in ids["train"][:N_REF]),
                              "unseen reference": sum(c in seen_by_net for c in ids["held"][:N_REF]),
                              "held-out pool": sum(c in seen_by_net for c in ids["held"][N_REF:])},
           "sets": {}}
    for name, dirs in sets.items():
        f = real.synthetic_features(net, dirs)
        n = len(f)
        row: dict = {"cases": n}
        for ref_name, ref in refs.items():
            jk = im.frechet_jackknife(f, ref)
            floor = im.floor_at_count(pool_held, ref, n, draws=DRAWS, seed=0)
            pr, pr_floor = im.prdc(f, ref), im.prdc_floor(pool_held, ref, n, draws=im.PRDC_FLOOR_DRAWS, seed=0)
            row[ref_name] = {"frechet": im.frechet_distance(f, ref), "interval": jk["frechet_interval"],
                             "floor": floor["frechet"], "floor_range": floor["frechet_range"],
                             "ratio": im.frechet_distance(f, ref) / floor["frechet"], "prdc": pr,
                             "prdc_floor": {k: pr_floor[k] for k in ("precision", "recall", "coverage",
                                                                     "precision_range", "recall_range", "coverage_range")}}
        seen_seen = im.floor_at_count(pool_train, refs["seen"], n, draws=DRAWS, seed=0)
        row["seen_against_seen"] = {"frechet": seen_seen["frechet"], "range": seen_seen["frechet_range"]}
        out["sets"][name] = row
        print(f"{name} ({n}): seen ref {row['seen']['frechet']:.1f} / floor {row['seen']['floor']:.1f} = "
              f"{row['seen']['ratio']:.1f}x; unseen ref {row['unseen']['frechet']:.1f} / floor "
              f"{row['unseen']['floor']:.1f} = {row['unseen']['ratio']:.1f}x; training pool against the seen ref "
              f"{seen_seen['frechet']:.1f}", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
