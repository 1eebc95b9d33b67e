"""x0_bright.json (this folder's, or the path given) -> differences.txt: t1c's level in the x0 estimate minus the
truth's, per kind, t and slab."""
import json
import sys
from pathlib import Path

import numpy as np

d = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "x0_bright.json").read_text())
slabs = " / ".join(f"{a}-{b}" for a, b in d["slabs"])
print(f"t1c level, x0 estimate - truth, per slab z {slabs}: mean over cases, +- 2 standard errors, cases above 0")
for kind, cases in d["cases"].items():
    for t in map(str, d["times"]):
        diff = np.array([[np.array(c["estimate"][t])[k, 0] - np.array(c["truth"])[k, 0] for k in range(3)] for c in cases])
        se = diff.std(0, ddof=1) / np.sqrt(len(diff))
        print(f"{kind} ({len(diff)} cases) t={t}: mean {diff.mean(0).round(3).tolist()} +- {(2 * se).round(3).tolist()}, "
              f"above 0 {(diff > 0).sum(0).tolist()}")
