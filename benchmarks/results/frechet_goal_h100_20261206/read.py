"""gen_features.npz (this lease's generated sets) against ../frechet_reference_cpu_20261206/all_features.npz's real
cases: the whole training fold (1164) as the reference, the floor at the sets' size from the 372 held-out cases (20
subsets, seed 0), each set's Frechet with its jackknife interval and ratio, the paired difference, and the same over
100 random 192-case references (point estimates).

    python read.py gen_features.npz > goal.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from medidiff.eval import image_metrics as im

REAL = Path(__file__).resolve().parent.parent / "frechet_reference_cpu_20261206/all_features.npz"


def main() -> None:
    real, gen = np.load(REAL), np.load(sys.argv[1])
    train, held = real["train"], real["held"]
    sets = {k: gen[k] for k in gen.files}
    n = len(next(iter(sets.values())))
    floor = im.floor_at_count(held, train, n, draws=20, seed=0)
    rows = {k: {"frechet": im.frechet_distance(f, train), **im.frechet_jackknife(f, train)} for k, f in sets.items()}
    out = {"cases": n, "floor": floor["frechet"], "floor_range": floor["frechet_range"], "sets": {}}
    for k, r in rows.items():
        out["sets"][k] = {"frechet": r["frechet"], "interval": r["frechet_interval"], "ratio": r["frechet"] / floor["frechet"],
                          "ratio_interval": [v / floor["frechet"] for v in r["frechet_interval"]]}
    # a check on the pipeline: against the manifest's first 128 training cases, the reference of
    # ../tail_pair_h200_20261206/pair_shipped.json (45.5 / 25.6 there, the same seeds generated on an H200)
    out["against the first 128 training cases"] = {k: im.frechet_distance(f, train[:128]) for k, f in sets.items()}
    if {"tail0", "tail1"} <= rows.keys():
        out["tail1_minus_tail0"] = im.frechet_difference(rows["tail1"], rows["tail0"])
    draws = []
    for d in range(100):
        ref = train[np.sort(np.random.default_rng(2000 + d).choice(len(train), 192, replace=False))]
        fl = im.floor_at_count(held, ref, n, draws=20, seed=0)["frechet"]
        draws.append({k: im.frechet_distance(f, ref) / fl for k, f in sets.items()})
    out["ratio over 100 random 192-case references (min, 5 %, median, 95 %, max)"] = {
        k: [float(np.percentile([d[k] for d in draws], p)) for p in (0, 5, 50, 95, 100)] for k in sets}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
