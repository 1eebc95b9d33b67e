"""medidiff evaluate's realism checks (quality_common.realism_checks_of) for the 4 mm sets of finetune_arms.sh,
against 128 real training and 128 held-out cases at 4 mm (../denoise_curve_cpu_20261202/small_4mm/eval4mm.yaml),
one JSON report a set in OUT and one JSON line a set on stdout (table.py makes real4mm_table.md from the reports).

    python realism4mm.py OUT NAME=FOLDER ...

The real set is read from $DATA (default /work/s45: manifest512.json and anat/).
"""
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402

CONFIG = HERE.parent / "denoise_curve_cpu_20261202/small_4mm/eval4mm.yaml"


def main(config: Path = CONFIG, n_real: int = 128) -> None:
    """(../tail_frechet_cpu_20261206/realism2mm.py calls it with the 2 mm config and 96 real cases.)"""
    out = Path(sys.argv[1])
    sets = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    data = Path(os.environ.get("DATA", "/work/s45"))
    res = realism_checks_of(config, data / "manifest512.json", data / "anat", sets, n_real, out)
    for name, r in res.items():
        c = r["checks"]
        print(name, json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list) or len(vv) <= 8}
                                for k, v in c.items()}, default=float))


if __name__ == "__main__":
    main()
