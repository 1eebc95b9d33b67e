"""Session 64: the 4 mm run's shipped-style EMA (hyperbolic warm-up), its last raw weights and a longer EMA (warm-up
none, max decay 0.997) on the same raw trajectory (seed 0 on the CPU: the raw weights checked equal), 32 paired
cases each. python compare_ema.py raw_vs_ema.json ema997_vs_raw.json > compare_ema.md"""
import json
import sys

import numpy as np

a, b = (json.load(open(p)) for p in sys.argv[1:3])
arms = {"EMA, hyperbolic (as shipped)": a["ema"], "raw, last step": a["raw"], "EMA, none 0.997": b["ema"]}
same_raw = [x["wt"] for x in a["raw"]] == [x["wt"] for x in b["raw"]] and [x["tc"] for x in a["raw"]] == [x["tc"] for x in b["raw"]]
print(f"raw weights' cases identical in both runs (same trajectory): {same_raw}\n")
print("| 32 cases, 4 mm | " + " | ".join(arms) + " |")
print("|---" * (len(arms) + 1) + "|")


def col(cases, key):
    return np.array([c[key] if c[key] is not None else np.nan for c in cases], float)


rows = [("cases with a tumour", lambda c: f"{int((col(c, 'wt') > 0).sum())}"),
        ("cases with a TC", lambda c: f"{int((col(c, 'tc') > 0).sum())}"),
        ("median WT voxels (cases with one)", lambda c: f"{np.median(col(c, 'wt')[col(c, 'wt') > 0]):.0f}"),
        ("median TC voxels (cases with one)", lambda c: f"{np.median(col(c, 'tc')[col(c, 'tc') > 0]):.0f}"),
        ("median core / rim ratio", lambda c: f"{np.nanmedian(col(c, 'ratio')):.3f}")]
for name, f in rows:
    print(f"| {name} | " + " | ".join(f(c) for c in arms.values()) + " |")
ref = a["ema"]
for name, c in list(arms.items())[1:]:
    e, w = col(ref, "wt"), col(c, "wt")
    ok = (e > 0) & (w > 0)
    print(f"\n- {name} against the shipped-style EMA: WT ratio median {np.median(w[ok] / e[ok]):.3f} over {ok.sum()} paired "
          f"cases, {(w[ok] > e[ok]).sum()} larger; ", end="")
    e, w = col(ref, "ratio"), col(c, "ratio")
    ok = np.isfinite(e) & np.isfinite(w)
    print(f"core ratio median difference {np.median(w[ok] - e[ok]):+.3f} over {ok.sum()}, {(w[ok] > e[ok]).sum()} higher")
