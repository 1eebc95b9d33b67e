"""The per-band and per-modality loss logs are float32 means, under bf16 autocast too (a bf16 matmul
and a bf16 running sum rounded them: two sub-bands once logged the same value to 16 digits)."""

from __future__ import annotations

import torch

from medidiff.training.diffusion import group_by_band
from medidiff.training.loop import _read_logs, add_logs

NAMES = ["LLL:t1n", "LLH:t1n", "LLL:t2f", "LLH:t2f"]


def test_band_means_are_exact_float32_under_bf16_autocast():
    per_channel = torch.tensor([0.0123457, 0.0023071, 0.0123451, 0.0023069])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = group_by_band(per_channel, NAMES)
    assert all(v.dtype == torch.float32 for v in logs.values())
    assert abs(float(logs["band/LLH"]) - 0.002307) < 1e-9
    assert abs(float(logs["modality/t2f"]) - (0.0123451 + 0.0023069) / 2) < 1e-9


def test_a_window_of_bf16_step_logs_sums_in_float32():
    sums: dict = {}
    step = torch.tensor(0.0023071, dtype=torch.bfloat16)  # a small loss, as a bf16 device scalar
    for _ in range(50):
        add_logs(sums, {"band/HHH": step, "plain": 0.5}, 1.0)
    mean = _read_logs(sums, 50)
    assert abs(mean["loss/band/HHH"] - float(step)) < 1e-7  # a bf16 running sum is ~10 % off here
    assert mean["loss/plain"] == 0.5
    bf16_sum = torch.zeros((), dtype=torch.bfloat16)
    for _ in range(50):
        bf16_sum = bf16_sum + step
    assert abs(float(bf16_sum) / 50 - float(step)) > 0.01 * float(step)  # the drift the float32 sums avoid
