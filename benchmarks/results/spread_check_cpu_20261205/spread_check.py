"""Does the realism task's new spread-across-cases check name the shipped model's under-dispersion? (issue 16;
CPU, 2026-12-05, session 41). The folders session 40 generated on the CPU (frechet_gap_cpu_20261205: the shipped
2 mm model, Heun 30, 32 cases; Euler 30 and Euler eta 1, 16 each) through medidiff.eval.realism's spread_check,
exactly as `medidiff evaluate` runs it (reference: the real training cases; floor: subsets of the real held-out
cases at the synthetic count), and as known-good inputs: real held-out cases left out of the floor, the same count.

    python spread_check.py CONFIG MANIFEST ROOT N_REAL NAME=FOLDER [NAME=FOLDER ...] > spread_check.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402

from medidiff.eval.realism import brain_masks, case_globals, spread_check, spread_property_names  # noqa: E402


def globals_of(images: torch.Tensor) -> np.ndarray:
    x = images.float()
    return case_globals(x, brain_masks(x))


def main() -> None:
    config, manifest, root, n_real = sys.argv[1:5]
    folders = dict(a.split("=", 1) for a in sys.argv[5:])
    torch.set_num_threads(2)
    real = _RealCases(Path(config), Path(manifest), Path(root), int(n_real))
    names = spread_property_names(real.dcfg.modalities)
    g_ref, g_held = globals_of(real.train.images), globals_of(real.heldout.images)
    out = {"real_train": len(g_ref), "real_heldout": len(g_held), "runs": {}, "real_controls": {}}
    for name, folder in folders.items():
        g = globals_of(real.synthetic(Path(folder)).images)
        out["runs"][name] = {"folder": folder, **spread_check(g, g_ref, g_held, names=names)}
        r = out["runs"][name]
        print(name, r["cases"], round(r["ratio"], 3), r["floor_range"], r.get("pass"), file=sys.stderr, flush=True)
    # known-good: real held-out cases of the same count scored against a floor from the other held-out cases
    # (so the floor's subsets never contain them), 20 seeded draws at each count
    rng = np.random.default_rng(0)
    for n in sorted({r["cases"] for r in out["runs"].values()}):
        rows = []
        for _ in range(20):
            p = rng.permutation(len(g_held))
            rows.append(spread_check(g_held[p[:n]], g_ref, g_held[p[n:]], names=names))
        out["real_controls"][str(n)] = {"draws": len(rows), "passed": sum(bool(r.get("pass")) for r in rows),
                                        "verdicts": sum("pass" in r for r in rows),
                                        "ratios": [round(r["ratio"], 4) for r in rows]}
        print("real", n, out["real_controls"][str(n)]["passed"], "of 20", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
