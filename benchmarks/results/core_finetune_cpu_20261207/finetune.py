"""Session 63: a short CPU fine-tune of the shipped model with its training times at high noise: do more samples at
t > 0.9 move the fresh draws' necrotic cores? session 21's denoise_curve_cpu_20261202/finetune.py (its main(), the
same code that ran here from a copy) with these two arms: the recipe's times (control) and high ones; the same
weights, batches and noise in both; the model folder written is the shipped one with the fine-tuned weights.

    python finetune.py --arm control|high --steps 150 --data DATA --manifest MANIFEST --out OUT
"""
import importlib.util
from pathlib import Path

# high: times mostly above 0.9 (logit-normal mean 2.5, std 0.7, then the shift 1.53: median 0.95). Not a recipe
# (it would forget the low noise levels): does training there move the fresh draws' cores?
ARMS = {"control": {}, "high": {"logit_mean": 2.5, "logit_std": 0.7}}

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location(
        "finetune_session21", Path(__file__).resolve().parents[1] / "denoise_curve_cpu_20261202" / "finetune.py")
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    base.ARMS = ARMS  # main() reads its module's ARMS (choices and the objective's keys)
    raise SystemExit(base.main())
