"""The benchmark scripts that record GPU figures still run (their CPU smoke settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    # in-process tests leave RANK/MASTER_PORT... in os.environ: the child must not join their group
    dist_keys = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in dist_keys}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_gpu_run_smoke_runs_every_stage_and_records_them(tmp_path):
    _run(["benchmarks/gpu_run.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--quiet"])
    record = json.loads((tmp_path / "gpu_run.json").read_text())
    assert set(record["stages"]) == {"data", "base", "sr", "generate", "evaluate"}
    assert record["losses"]["base"]["steps"] == 20 and not record["losses"]["base"]["time_limited"]
    assert (tmp_path / "report" / "report.json").is_file() and (tmp_path / "loss_curves.png").is_file()
    prov = json.loads((tmp_path / "generated" / "case_0000" / "provenance.json").read_text())
    assert prov["steps"] == 30 and prov["sr_steps"] == 10  # each stage with its own sampler config


def test_unet_bench_cpu_smoke_compares_both_nets(tmp_path):
    out = tmp_path / "unet.json"
    _run(["benchmarks/unet_bench.py", "--device", "cpu", "--batch", "1", "--size", "16", "--channels", "8", "16",
          "16", "--med-res-blocks", "1", "2", "2", "--skip", "add", "--norm", "pixel", "--steps", "2", "--warmup",
          "1", "--variants", "monai_autocast", "med_eager_autocast", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["monai_autocast", "med_eager_autocast"]
    assert report["results"][1]["config"]["norm"] == "pixel" and "med_eager_autocast_vs_monai_autocast" in report["ratios"]


def test_step_profile_smoke_times_both_loaders_and_profiles(tmp_path):
    _run(["benchmarks/step_profile.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--workers", "1",
          "--seconds", "2"])
    record = json.loads((tmp_path / "step_profile.json").read_text())
    assert set(record["rates"]) == {"workers_0", "workers_1"}
    assert all(r["steps"] > 0 and r["steps_per_s_median"] > 0 for r in record["rates"].values())
    per_step = record["per_step"]
    assert per_step["wall_ms"] > 0 and per_step["top_ops"]


@pytest.mark.slow
def test_preemption_bench_smoke_stops_resumes_and_compares_stages(tmp_path):
    _run(["benchmarks/preemption_bench.py", "--device", "cpu", "--gpus", "2", "--smoke", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "preemption.json").read_text())
    for stage in ("zero2", "zero3"):
        res = record["stages"][stage]
        assert res["stopped"]["ranks_stopped_at_checkpoint"] and not res["stopped"]["worker_killed_by_signal"]
        assert res["stopped"]["seconds_to_complete_checkpoint"] is not None and res["resumed"]["exit"] == 0
        assert res["resumed_final_step"] == 8 and res["resumed_vs_full_max_rel_loss_diff"] == 0.0  # CPU fp32: exact
    assert record["zero3_vs_zero2"]["max_rel_loss_diff"] < 1e-4


def test_cascade_bench_fit_recovers_fixed_and_per_step_cost():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cascade_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "cascade_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fit = mod.fit_fixed_plus_steps([20, 40, 60], [0.5 + 0.01 * k for k in (20, 40, 60)])
    assert abs(fit["fixed_s"] - 0.5) < 1e-6 and abs(fit["per_step_s"] - 0.01) < 1e-8 and not fit["fixed_negative"]
    # a negative fixed cost (as the recorded H100 pair implied) is flagged, not extrapolated silently
    assert mod.fit_fixed_plus_steps([20, 40, 60], [1.0, 2.4, 3.8])["fixed_negative"]
    with pytest.raises(ValueError):
        mod.fit_fixed_plus_steps([20, 40], [1.0, 2.0])
    with pytest.raises(ValueError, match="three distinct"):  # three timings of two step counts: still a line
        mod.fit_fixed_plus_steps([20, 40, 40], [1.0, 2.0, 2.1])
    # every residual is recorded, and they are what the fit leaves: timings = fixed + K per_step + residual
    bent = mod.fit_fixed_plus_steps([10, 20, 30, 40], [1.0, 1.5, 2.2, 2.5])
    for k, t, r in zip(bent["steps"], bent["seconds"], bent["residuals_s"]):
        assert abs(bent["fixed_s"] + k * bent["per_step_s"] + r - t) < 1e-4
    assert bent["max_abs_residual_s"] == max(abs(r) for r in bent["residuals_s"]) > 0


def test_cascade_bench_refuses_to_fit_fewer_than_three_step_counts(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cascade_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "cascade_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--device", "cpu", "--tiny", "--steps", "10", "30", "30"]) == 2
    err = capsys.readouterr().err
    assert "three distinct step counts" in err and len(err.strip().splitlines()) == 1


def test_loop_bench_cpu_smoke_times_the_loop_and_its_net(tmp_path):
    out = tmp_path / "loop.json"
    _run(["benchmarks/loop_bench.py", "--smoke", "--device", "cpu", "--steps", "12", "--net-steps", "2",
          "--work", str(tmp_path / "work"), "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["loop"]["steps_per_s"] > 0 and r["loop"]["windows"] >= 1 and r["net_alone"]["vol_per_s"] > 0
    assert r["loop_vs_net"] == r["loop"]["vol_per_s"] / r["net_alone"]["vol_per_s"]
    assert r["flops_per_step"] > 0 and 0 < r["mfu_net"]["vs_datasheet"] < r["mfu_net"]["vs_measured_matmul"]


def test_sr_loader_bench_cpu_smoke_copies_windows_not_cases(tmp_path):
    out = tmp_path / "sr_loader.json"
    _run(["benchmarks/sr_loader_bench.py", "--smoke", "--device", "cpu", "--steps", "2", "--warmup", "1",
          "--cases", "2", "--work", str(tmp_path / "work"), "--out", str(out)])
    rows = {r["mode"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["windows"]["batch_shapes"]["image"] == [2, 4, 20, 20, 20]  # 16^3 patch + halo, not the 32^3 case
    assert rows["whole"]["batch_shapes"]["image"] == [2, 4, 32, 32, 32]
    assert rows["windows"]["mib_to_device_per_step"] < rows["whole"]["mib_to_device_per_step"]
    assert all(0 <= r["data_wait_share"] <= 1 and r["steps_per_s"] > 0 for r in rows.values())
