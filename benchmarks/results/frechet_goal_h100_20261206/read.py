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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "frechet_reference_cpu_20261206"))
from common_pool import reading  # noqa: E402

from medidiff.eval.image_metrics import frechet_distance  # noqa: E402

REAL = HERE.parent / "frechet_reference_cpu_20261206/all_features.npz"


def main() -> None:
    real, gen = np.load(REAL), np.load(sys.argv[1])
    train, held = real["train"], real["held"]
    sets = {k: gen[k] for k in gen.files}  # tail0 and tail1
    n = len(next(iter(sets.values())))
    whole = reading(train, held, sets, paired=True, n=n)
    out = {"cases": n, "floor": whole["floor"], "floor_range": whole["floor_range"],
           "sets": {k: {"frechet": whole[k], "interval": whole[f"{k}_interval"], "ratio": whole[f"{k}_ratio"],
                        "ratio_interval": [v / whole["floor"] for v in whole[f"{k}_interval"]]} for k in sets}}
    # a check on the pipeline: against the manifest's first 128 training cases, the reference of
    # ../tail_pair_h200_20261206/pair_shipped.json (45.5 / 25.6 there, the same seeds generated on an H200)
    out["against the first 128 training cases"] = {k: frechet_distance(f, train[:128]) for k, f in sets.items()}
    out["tail1_minus_tail0"] = whole["tail1_minus_tail0"]
    draws = [reading(train[np.sort(np.random.default_rng(2000 + d).choice(len(train), 192, replace=False))], held,
                     sets, paired=False, n=n) for d in range(100)]
    out["ratio over 100 random 192-case references (min, 5 %, median, 95 %, max)"] = {
        k: [float(np.percentile([r[f"{k}_ratio"] for r in draws], p)) for p in (0, 5, 50, 95, 100)] for k in sets}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
