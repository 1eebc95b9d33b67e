"""Paired background RMS differences between 4 mm sets generated with the same seeds (case i = seed i in each):
mean of B - A over cases with a 95 % bootstrap interval (cases resampled, 10 000 draws). Case-to-case spread
only: one training run an arm, so run-to-run spread is not in the interval.

    python paired_bg.py A=FOLDER B=FOLDER [A2=... B2=...]   (pairs in order)
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import MODALITIES, background_scores, read_case  # noqa: E402


def rms(folder: str) -> np.ndarray:
    cases = sorted(d for d in Path(folder).iterdir() if d.is_dir() and d.name.startswith("case_"))
    return np.array([background_scores(read_case(c, MODALITIES))["background_rms"] for c in cases])


args = [a.split("=", 1) for a in sys.argv[1:]]
rng = np.random.default_rng(0)
for (na, fa), (nb, fb) in zip(args[0::2], args[1::2]):
    a, b = rms(fa), rms(fb)
    d = b - a
    boots = d[rng.integers(0, len(d), (10000, len(d)))].mean(1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    print(json.dumps({"a": na, "b": nb, "cases": len(d), "mean_a": a.mean(), "mean_b": b.mean(),
                      "mean_b_minus_a": d.mean(), "ci95": [lo, hi], "b_lower_in": int((d < 0).sum())}))
