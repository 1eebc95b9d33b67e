"""The real-vs-real Frechet at the generated sets' sizes, on tail_pair.py's reference (the 512-case set's first 128
training cases, the tracked feature net): 96 and 192 other real cases (training cases 128-319, disjoint from the
reference; the held-out fold has too few for 192), with the same jackknife interval as the generated sets, and 20
draws of 96 of those 192 (median, range).

    DATA=/tmp/tp THREADS=8 python floor.py > floor.json
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tail_frechet_cpu_20261206"))
from tail_pair import real_cases_and_net  # noqa: E402

from medidiff.eval.image_metrics import frechet_distance, frechet_jackknife  # noqa: E402


def main() -> None:
    _, _, f = real_cases_and_net(320)
    ref, other = f[:128], f[128:320]
    out = {"reference": "training cases 0-127", "other": f"training cases 128-{127 + len(other)}"}
    for n in (96, len(other)):
        jk = frechet_jackknife(other[:n], ref)
        out[f"real_{n}"] = {"frechet": frechet_distance(other[:n], ref), "interval": jk["frechet_interval"],
                            "feature_sd_mean": float(other[:n].std(0).mean())}
    rng = np.random.default_rng(0)
    draws = [frechet_distance(other[np.sort(rng.choice(len(other), 96, replace=False))], ref) for _ in range(20)]
    out["draws_96"] = {"median": float(np.median(draws)), "range": [float(min(draws)), float(max(draws))]}
    out["reference_sd_mean"] = float(ref.std(0).mean())
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
