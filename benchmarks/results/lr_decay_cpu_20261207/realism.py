"""evaluate's realism checks (quality_common.realism_checks_of) for run.sh's 4 mm sets, on the first run's resolved
config with evaluate's scale as quality_scale's phases set it (data.percentiles [0.5, 99.5] over the brain, top 1),
against 96 real training and 96 held-out cases of the 400-case manifest (/work/s53/manifest400.json, the 1536-case
set's first 400, at 4 mm through the run's spacing): one JSON report a set in OUT, a summary line a set on stdout.

    python realism.py OUT NAME=FOLDER ...
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402

SETS = ["data.percentiles=[0.5, 99.5]", "data.percentile_region=brain", "data.percentile_top=1.0"]

if __name__ == "__main__":
    out = Path(sys.argv[1])
    sets = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    config = Path("/work/s55/lr/runs") / next(iter(sets)) / "resolved_config.yaml"
    res = realism_checks_of(config, Path("/work/s53/manifest400.json"), Path("/work/s53/anat400"), sets, 96, out,
                            sets=SETS)
    for name, r in res.items():
        c = r["checks"]
        print(name, json.dumps({k: v.get("pass") for k, v in c.items() if isinstance(v, dict)}))
