"""evaluate's realism checks (quality_common.realism_checks_of) for the sets of run.sh (../tail_grain_cpu_20261206/realism.py, run from outside the tree), on the scaleout seed-0 run's
config with evaluate's scale as quality_scale's phases set it (data.percentiles [0.5, 99.5] over the brain, top 1),
the first 12 cases of each folder (eval.max_synthetic), against 96 real training and 96 held-out cases of the lease's
manifest (/work/s53/anat1536): one JSON report a set in OUT, a summary line a set on stdout.

    python realism.py OUT NAME=FOLDER ...
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/ (run from /work/s55 beside the tree: "/work/main/benchmarks" then)
from quality_common import realism_checks_of  # noqa: E402

# ../quality_scaleout_h100_20261206/configs/ copied here
CONFIG = HERE / "x0_detail100_labels_lll100_skip005_scaleout_seed0.yaml"
SETS = ["data.percentiles=[0.5, 99.5]", "data.percentile_region=brain", "data.percentile_top=1.0", "eval.max_synthetic=12"]

if __name__ == "__main__":
    out = Path(sys.argv[1])
    sets = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    res = realism_checks_of(CONFIG, Path("/work/s53/lease/quality_scale/manifest.json"), Path("/work/s53/anat1536"),
                            sets, 96, out, sets=SETS)
    for name, r in res.items():
        c = r["checks"]
        print(name, json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, (list, dict)) or k == "detail_coherence"}
                                for k, v in c.items()}, default=float))
