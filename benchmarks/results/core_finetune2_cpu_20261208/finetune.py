"""Session 64: which part of session 63's control fine-tune enlarged the shipped model's necrotic cores, and does
quality_scale's tmean05 arm's time law (logit-normal mean 0.5) move them? session 21's
denoise_curve_cpu_20261202/finetune.py (its main()) with these arms; --seed-offset moves its two generators (the
cases drawn and the noise) so a second control is another draw of the same fine-tune.

    python finetune.py --arm control|tmean05 --steps 150 [--lr 5e-5] [--seed-offset 0] --data DATA \
        --manifest MANIFEST --out OUT [--name NAME]
"""
import importlib.util
import sys
from pathlib import Path

import torch

ARMS = {"control": {}, "tmean05": {"logit_mean": 0.5}}


def _take(flag: str, default: str) -> str:
    if flag in sys.argv:
        i = sys.argv.index(flag)
        value = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        return value
    return default


if __name__ == "__main__":
    offset = int(_take("--seed-offset", "0"))
    name = _take("--name", "")
    base_gen = torch.Generator

    class _Offset(base_gen):  # main() seeds its case order with 1 and its noise with 2: shift both
        def manual_seed(self, seed):
            return super().manual_seed(seed + offset)

    torch.Generator = _Offset
    spec = importlib.util.spec_from_file_location(
        "finetune_session21", Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202" / "finetune.py")
    if not Path(spec.origin).exists():  # run from a scratch copy: the repository's record
        spec = importlib.util.spec_from_file_location(
            "finetune_session21", "/work/main/benchmarks/results/denoise_curve_cpu_20261202/finetune.py")
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    arms = dict(ARMS)
    if name:  # the folder main() writes is named by the arm: a named copy of one
        arm = sys.argv[sys.argv.index("--arm") + 1]
        arms[name] = ARMS[arm]
        sys.argv[sys.argv.index("--arm") + 1] = name
    base.ARMS = arms
    raise SystemExit(base.main())
