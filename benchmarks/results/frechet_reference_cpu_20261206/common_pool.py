"""The record's readings again from all_features.npz with one floor pool for every reference (all 372 held-out
cases, 20 subsets of 48, seed 0; full.json's), after a review found the first scripts' floors drawn from different
held-out pools (evaluate's 192, all 372, the other 244): each reference's floor, the two generated sets' Frechet
and ratio, the tail's cut with its paired interval (single references), over 100 independent draws of 192 and of
128 of the training fold, and the training-fold side's floor beside the held-out one over 40 whole-fold draws.

    python common_pool.py all_features.npz > common_pool.json
"""
import json
import sys

import numpy as np

from medidiff.eval import image_metrics as im

N, FLOOR_DRAWS = 48, 20


def reading(ref: np.ndarray, held: np.ndarray, gens: dict[str, np.ndarray], *, paired: bool, n: int = N) -> dict:
    """Against reference ``ref``: the floor at ``n`` from ``held``, each of ``gens``' Frechet and ratio (``tail0`` and
    ``tail1`` among them), their cut, and with ``paired`` the jackknife intervals and the paired difference
    (../frechet_goal_h100_20261206/read.py reads its sets with it too)."""
    floor = im.floor_at_count(held, ref, n, draws=FLOOR_DRAWS, seed=0)
    row = {"reference": len(ref), "floor": floor["frechet"], "floor_range": floor["frechet_range"]}
    jk = {}
    for k, f in gens.items():
        fd = im.frechet_distance(f, ref)
        row[k] = fd
        row[f"{k}_ratio"] = fd / floor["frechet"]
        if paired:
            jk[k] = {"frechet": fd, **im.frechet_jackknife(f, ref)}
            row[f"{k}_interval"] = jk[k]["frechet_interval"]
    row["cut"] = row["tail0"] - row["tail1"]
    if paired:
        row["tail1_minus_tail0"] = im.frechet_difference(jk["tail1"], jk["tail0"])
    return row


def spread(rows: list[dict], keys: list[str]) -> dict:
    pct = [0, 5, 50, 95, 100]
    return {"percentiles": pct, **{k: [float(np.percentile([r[k] for r in rows], p)) for p in pct] for k in keys}}


def main() -> None:
    z = np.load(sys.argv[1])
    train, held = z["train"], z["held"]
    gens = {"tail0": z["gen_tail0"], "tail1": z["gen_tail1"]}
    n = len(train)
    evaluate = np.sort(np.random.default_rng(0).choice(n, 192, replace=False))  # evdata.seeded_subset(..., 192, 0)
    single = {"whole training fold": np.arange(n), "evaluate's 192 (eval.max_real=192, seed 0)": evaluate,
              "the manifest's first 128": np.arange(128), "the manifest's first 192": np.arange(192)}
    out: dict = {"floor_pool": f"all {len(held)} held-out cases, {FLOOR_DRAWS} subsets of {N}, seed 0",
                 "single": {name: reading(train[idx], held, gens, paired=True) for name, idx in single.items()}}
    keys = ["floor", "tail0", "tail1", "tail0_ratio", "tail1_ratio", "cut"]
    for size, seed0 in ((192, 2000), (128, 3000)):
        rows = [reading(train[np.sort(np.random.default_rng(seed0 + d).choice(n, size, replace=False))], held, gens,
                        paired=False) for d in range(100)]
        out[f"100 draws of {size}"] = spread(rows, keys)
    # the net's fit: the training fold's own cases (not in the reference) against the held-out ones as the floor
    fit = []
    for d in range(40):
        pick = np.sort(np.random.default_rng(4000 + d).choice(n, 192, replace=False))
        rest = np.setdiff1d(np.arange(n), pick)
        fh = im.floor_at_count(held, train[pick], N, draws=FLOOR_DRAWS, seed=0)["frechet"]
        ft = im.floor_at_count(train[rest], train[pick], N, draws=FLOOR_DRAWS, seed=0)["frechet"]
        fit.append({"held_out_floor": fh, "training_floor": ft, "ratio": fh / ft})
    out["40 whole-fold draws of 192: held-out against training-fold floor"] = {
        **spread(fit, ["held_out_floor", "training_floor", "ratio"]),
        "held_out_further": sum(r["ratio"] > 1 for r in fit), "draws": len(fit)}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
