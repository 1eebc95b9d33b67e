"""Background scores (quality_common.background_scores) of generated 4 mm sets, per set: mean and per-case."""
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import MODALITIES, background_scores, read_case
out = {}
for arg in sys.argv[1:]:
    name, folder = arg.split("=")
    cases = sorted(d for d in Path(folder).iterdir() if d.is_dir() and d.name.startswith("case_"))
    s = [background_scores(read_case(c, MODALITIES)) for c in cases]
    rms = np.array([x["background_rms"] for x in s]); sp = np.array([x["speckle"] for x in s])
    out[name] = {"cases": len(s), "background_rms": float(rms.mean()), "speckle": float(sp.mean()),
                 "head_fraction": float(np.mean([x["head_fraction"] for x in s])),
                 "rms_quartiles": [float(q) for q in np.quantile(rms, [0.25, 0.5, 0.75])]}
    print(name, json.dumps(out[name]), flush=True)
