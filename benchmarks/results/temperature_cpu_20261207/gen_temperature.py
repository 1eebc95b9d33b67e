"""Session 58: the shipped anatomy-2mm's starting noise scaled by a temperature (x_1 ~ N(0, tau^2 I) instead of
N(0, I)), an inference-time probe of its under-dispersion (brain sizes and per-case levels 0.28-0.57 as varied as
real's, quality_scaleout_seed2_fresh_h100_20261207). Nothing in medidiff exposes it: this script scales the draw of
medidiff.samplers.randn_per_sample for the starting noise only (Heun draws nothing else), then runs
`medidiff generate` as a user would (30 Heun steps, the model's sampler; CPU generators: case i starts from case
seed i's noise times tau, so it pairs with the untempered case i). The provenance does not record tau: the folder
name does.

    python gen_temperature.py TAU OUT --num N     (from any folder; the 2-core development machine)"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

import medidiff.samplers as samplers  # noqa: E402
from medidiff.cli.main import main  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("tau", type=float)
ap.add_argument("out")
ap.add_argument("--num", type=int, default=24)
args = ap.parse_args()
draw = samplers.randn_per_sample


def tempered(*a, **k):
    return draw(*a, **k) * args.tau


samplers.randn_per_sample = tempered  # sample() reads the module's name at call time
raise SystemExit(main(["generate", "--model", "anatomy-2mm", "--num", str(args.num), "--seed", "0", "--device", "cpu",
                       "--out", args.out, "--no-progress"]))
