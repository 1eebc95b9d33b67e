"""The benchmark scripts that record GPU figures still run (their CPU smoke settings)."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medidiff.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    # in-process tests leave RANK/MASTER_PORT... in os.environ: the child must not join their group
    dist_keys = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in dist_keys}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=870)  # under the per-test 900 s
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# 44 s on the CI machine: the end-to-end run is covered step by step by the default suite (the
# stages, generate, evaluate); its script, by `python -m pytest -m slow` before a device session
@pytest.mark.slow
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


# 46 s; loop_bench (default suite) profiles the phases of the same loop
@pytest.mark.slow
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
    _run(["benchmarks/preemption_bench.py", "--device", "cpu", "--gpus", "2", "--smoke", "--resume-gpus", "1",
          "--out", str(tmp_path)])
    record = json.loads((tmp_path / "preemption.json").read_text())
    for stage in ("zero2", "zero3"):
        res = record["stages"][stage]
        other = res["resumed_on_other_count"]  # the stopped run's copy, resumed on 1 process
        assert other["exit"] == 0 and other["converted"] and other["final_step"] == 8
        assert other["conversion_seconds"] is not None and other["steps_compared"] > 0
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


def test_cascade_bench_profiles_where_a_case_goes(tmp_path):
    out = tmp_path / "cascade.json"
    _run(["benchmarks/cascade_bench.py", "--device", "cpu", "--tiny", "--steps", "1", "2", "3", "--cases", "1",
          "--ddpm-measure-steps", "5", "--profile", "--out", str(out)])
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    prof = rows["cascade_flow_profile"]
    assert prof["sampler_steps_per_stage"] == 3 and prof["cases"] == 1 and prof["wall_ms_per_step"] > 0
    phases = prof["phase_cpu_ms_per_step"]
    assert {"base_sample", "base_decode", "base_to_sr", "sr_condition", "sr_sample", "sr_decode", "labels"} <= set(phases)
    assert sum(phases.values()) <= prof["wall_ms_per_step"] * 1.05  # the ranges do not overlap


# mask_flow: a net with a cond_image input; cascade_sr: the SR stage's trainer, on patches, with a scalar
# input; text_flow: cross-attention to a random encoder's tokens; vae: the autoencoder's own stage;
# vae_ldm: diffusion on the latents of a random VAE of vae.yaml's architecture
@pytest.mark.parametrize("config", ["wavelet_flow", "mask_flow", "cascade_sr", "text_flow", "vae", "vae_ldm"])
def test_loop_bench_cpu_smoke_times_the_loop_and_its_net(tmp_path, config):
    out = tmp_path / "loop.json"
    profiled = ["--profile-steps", "2"] if config == "wavelet_flow" else []
    # text_flow and cascade_sr ship train.compile; inductor's CPU compile was ~90 % of each smoke (text_flow
    # 107 s against 9 s eager on a 2-core machine): cascade_sr keeps it, the suite's one compiled training loop
    eager = ["--set", "train.compile=false"] if config == "text_flow" else []
    _run(["benchmarks/loop_bench.py", "--smoke", "--device", "cpu", "--steps", "12", "--net-steps", "2", *profiled, *eager,
          "--loader-batches", "3", "--config", str(REPO / "configs" / f"{config}.yaml"), "--work", str(tmp_path / "work"),
          "--out", str(out)])
    r = json.loads(out.read_text())
    if profiled:  # on a CPU each phase counts the leaf operators it runs (kernel launches on a GPU)
        launches = r["profile"]["phase_launches_per_step"]
        assert all(launches[k] > 0 for k in ("forward", "backward", "optimizer", "ema")), launches
        assert launches["backward"] > launches["ema"]
    assert r["stage"] == {"cascade_sr": "sr", "vae": "vae"}.get(config, "diffusion")
    assert r["loop"]["steps_per_s"] > 0 and r["loop"]["windows"] >= 1 and r["net_alone"]["vol_per_s"] > 0
    assert r["loop_vs_net"] == r["loop"]["vol_per_s"] / r["net_alone"]["vol_per_s"]
    # the loop's own loader, timed alone: the data of one batch, and whether it can feed the net
    loader = r["loader_alone"]
    assert loader["batches"] == 3 and loader["vol_per_s"] > 0 and loader["mib_per_batch"] > 0
    assert r["loader_vs_net"] == loader["vol_per_s"] / r["net_alone"]["vol_per_s"]
    assert r["flops_per_step"] > 0 and 0 < r["mfu_net"]["vs_datasheet"] < r["mfu_net"]["vs_measured_matmul"]
    if config == "vae_ldm":  # the net works on the VAE's latents: 4 channels at a quarter of the roi
        assert r["vae_codec"] and r["latent_shape"] == [4, 4, 4, 4] and not r["latent_cache"]


def test_loop_bench_trains_vae_ldm_from_a_latent_cache_as_readme_does(monkeypatch, tmp_path):
    # README's latent diffusion steps encode the cases once (medidiff latents encode) and train from the cache;
    # here with the user's own codec (--set latent.path), and a stale cache left in --work by another run
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import loop_bench

    out, work = tmp_path / "loop.json", tmp_path / "work"
    codec = loop_bench.bench_vae_codec(tmp_path / "my_vae", load_config(REPO / "configs" / "vae_ldm.yaml").data.modalities,
                                       smoke=True)
    (work / "latent_cache").mkdir(parents=True)
    (work / "latent_cache" / "cache.json").write_text(json.dumps({"num_cases": 1, "cases": {}, "pipeline_hash": "stale"}))
    _run(["benchmarks/loop_bench.py", "--smoke", "--device", "cpu", "--steps", "8", "--net-steps", "2", "--loader-batches",
          "2", "--config", str(REPO / "configs" / "vae_ldm.yaml"), "--latent-cache", "--work", str(work), "--out", str(out),
          "--set", f"latent.path={codec}"])
    r = json.loads(out.read_text())
    cache = json.loads((work / "latent_cache" / "cache.json").read_text())
    assert r["latent_cache"] and r["latent_shape"] == [4, 4, 4, 4] and r["loop"]["steps_per_s"] > 0
    assert cache["num_cases"] == len(cache["cases"]) == 8  # every bench case encoded afresh, once
    assert r["vae_codec"] == str(codec) and not (work / "vae_codec").exists()  # the user's codec, named as such


@pytest.mark.slow
def test_quality_scale_smoke_trains_seeds_side_by_side_and_scores_each(monkeypatch, tmp_path):
    # --nets-after: the evaluation's nets train once the seeds are done (their logs are written later)
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--seeds", "2",
          "--nets-after", "--case-seed", "3"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert not any(r["exits"].values()) and r["seeds"] == [0, 1] and list(r["runs"]) == ["seed0", "seed1"]
    assert r["nets_after"] and "feature_net and tissue_net trained after them" in (tmp_path / "report.md").read_text()
    def clock(line: str) -> int:  # "[HH:MM:SSZ] ..." -> seconds of the day
        h, m, sec = line[1:9].split(":")
        return int(h) * 3600 + int(m) * 60 + int(sec)

    last = {n: (tmp_path / "logs" / f"{n}.log").read_text().strip().splitlines()[-1]
            for n in ("seed0", "seed1", "feature_net", "tissue_net")}
    seeds_end = max(clock(last[s]) for s in ("seed0", "seed1"))
    for net in ("feature_net", "tissue_net"):  # "[t] feature_net trained in N s": it started at t - N
        started = clock(last[net]) - int(last[net].split(" trained in ")[1].split()[0])
        # the clocks are times of day: the difference is taken across a UTC midnight
        assert (started - seeds_end + 43200) % 86400 - 43200 >= -1, (last[net], seeds_end)
    for s in ("seed0", "seed1"):
        assert r["run_records"][s]["steps"] == 2 and r["run_records"][s]["generated"] == 2
        # --case-seed: every run's cases drawn from case seed 3 on, and recorded
        cases = sorted((tmp_path / "generated" / s).glob("case_*"))
        assert [json.loads((c / "provenance.json").read_text())["seed"] for c in cases] == [3, 4]
        assert json.loads((tmp_path / "seeds" / f"{s}.json").read_text())["case_seed"] == 3
        report = json.loads((tmp_path / "eval" / s / "report.json").read_text())
        assert "saved" in report["feature_net"]  # the one feature net trained after the seeds, loaded by each
        assert "in process" in report["how"]  # the real side built once for both seeds
        assert report["data"]["cases"]["real_train"] + report["data"]["cases"]["real_heldout"] == 8
        assert set(report["results"]) == {"realism", "image"}  # memorisation and tissue have their own folders
        audit = json.loads((tmp_path / "eval" / f"{s}_memorisation" / "report.json").read_text())
        # in process, against every training case (image space: no net)
        assert set(audit["results"]) == {"memorisation"} and "in process" in audit["how"]
        assert audit["cases"]["real_train"] + audit["cases"]["real_heldout"] == 8
        fid = json.loads((tmp_path / "eval" / f"{s}_fidelity" / "report.json").read_text())["results"]["fidelity"]
        assert fid["cases"] == 2 and set(fid["dice_ratio_to_real"]) == {"WT", "TC", "ET"}  # beside real held-out
        tissue = json.loads((tmp_path / "eval" / f"{s}_tissue" / "report.json").read_text())
        assert set(tissue["results"]) == {"tissue"}
        # the one tissue segmenter trained beside the seeds, loaded by each
        assert "loaded from" in tissue["results"]["tissue"]["segmenter"]["source"]
        assert (tmp_path / f"{s}_vs_real.png").is_file()
        quick = json.loads((tmp_path / "realism" / f"{s}.json").read_text())  # the in-process phase ran first
        assert set(quick["results"]["realism"]["checks"]) >= {"background", "power_spectrum", "intensity_histogram"}
        # ... and read again on the outside-the-tumour scale, the normal brain's histogram apart
        assert (tmp_path / _quality_scale(monkeypatch).NORMAL_BRAIN_REALISM / f"{s}.json").is_file()
        assert set(r["per_run"][s]) >= {f"histogram_w1_outside_tumour_{m}" for m in ("t1n", "t1c", "t2w", "t2f")}
        assert r["realism_source"][s] == "image"  # the image phase finished: its realism rows replaced the quick ones
    summary = r["summary"]["x0"]
    assert summary["frechet_3d"]["n"] == 2 and summary["memorisation_flagged"]["n"] == 2
    assert summary["tissue_qc_checks"]["n"] == 2
    assert all(state == "done" for ph in r["eval_phases"].values() for state in ph["runs"].values())
    assert r["eval_phases"]["image"]["how"] == "in process" and "image (in process" in (tmp_path / "report.md").read_text()
    # two seeds of one recipe: the pick by half of the cases is tried (2 cases a seed are too few to halve)
    assert "fewer than 4 cases" in r["seed_pick"]["x0"]["not read"]
    assert "Picking one run of `x0` by half of its cases" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "models" / "seed0" / "model.safetensors").is_file()  # what pack_pretrained.py takes
    assert "mean x0 [t95]" in (tmp_path / "report.md").read_text()
    # the next device session: the same data (the same --out on the GPU host), the nets carried back (--nets)
    import shutil

    for net in ("feature_net", "tissue_net"):
        shutil.copytree(tmp_path / net, tmp_path / "carried" / net)
    for old in tmp_path.iterdir():  # a fresh host: the data set is written again, the same; no runs
        if old.name not in ("data", "manifest.json", "carried"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--seeds", "1",
          "--phases", "realism", "fidelity", "tissue", "--nets", str(tmp_path / "carried")])
    again = json.loads((tmp_path / "quality_scale.json").read_text())
    assert again["nets_reused"] == ["feature_net", "tissue_net"] and not any(again["exits"].values())
    assert not {"feature_net", "tissue_net"} & set(again["exits"])  # no net trained
    assert "no evaluation net trained (feature_net and tissue_net reused" in (tmp_path / "report.md").read_text()
    tissue = json.loads((tmp_path / "eval" / "seed0_tissue" / "report.json").read_text())
    assert "loaded from" in tissue["results"]["tissue"]["segmenter"]["source"]
    # a model trained earlier on this data (e.g. the shipped one) evaluated, not trained: --model
    shutil.copytree(tmp_path / "models" / "seed0", tmp_path / "given")
    given = ["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu",
             "--model", str(tmp_path / "given"), "--phases", "realism", "memorisation"]
    refused = subprocess.run([sys.executable, *given, "--runs", "x0_detail10:0"], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert refused.returncode == 2 and "trained with another recipe" in refused.stderr  # not its recipe
    # the given model sampled with another sampler than its own, and a tail step
    _run([*given, "--runs", "x0:0", "--tail-steps", "1", "--sampler", "euler", "--steps", "3"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert r["model"] == str(tmp_path / "given") and list(r["runs"]) == ["seed0"] and not any(r["exits"].values())
    prov = json.loads((tmp_path / "generated" / "seed0" / "case_0000" / "provenance.json").read_text())
    assert (prov["tail_steps"], prov["sampler"], prov["steps"]) == (1, "euler", 3)
    assert (r["run_records"]["seed0"]["sampler"], r["run_records"]["seed0"]["sampler_steps"]) == ("euler", 3)
    assert not r["run_records"]["seed0"]["trained_here"] and r["run_records"]["seed0"]["steps"] == 2
    assert r["run_records"]["seed0"]["generated"] == 2 and r["per_run"]["seed0"]["memorisation_flagged"] == 0
    assert f"not trained here: the model `{tmp_path / 'given'}`" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "card_draft.json").exists()  # the first job's draft described another model
    # the given model as a control beside a trained run (the first of --runs is the given one)
    _run([*given, "--runs", "x0:0", "x0_detail10:1"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert list(r["runs"]) == ["x0_seed0", "x0_detail10_seed1"] and not any(r["exits"].values())
    assert not r["run_records"]["x0_seed0"]["trained_here"]
    assert r["run_records"]["x0_detail10_seed1"]["trained_here"] and r["run_records"]["x0_detail10_seed1"]["steps"] == 2
    assert r["run_records"]["x0_detail10_seed1"]["model"] == str(tmp_path / "models" / "x0_detail10_seed1")
    assert "the other 1 run trained beside its generation" in (tmp_path / "report.md").read_text()
    assert r["summary"]["x0"] == {} and r["summary"]["x0_detail10"]["steps"]["n"] == 1  # the control is not averaged
    card = json.loads((tmp_path / "card_draft.json").read_text())  # the card facts are the trained run's
    assert list(card["metrics"])[0] == "x0_detail10_seed1" and "x0_detail10_seed1" in card["commands"][1]


@pytest.mark.slow
def test_quality_scale_smoke_trains_variants_side_by_side_with_their_own_keys(tmp_path):
    # as --runs pairs (the training processes get them too): x0 at seed 1 beside x0_detail10 at seed 0
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu",
          "--runs", "x0:1", "x0_detail10:0", "--phases", "realism"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert not any(r["exits"].values()) and list(r["runs"]) == ["x0_seed1", "x0_detail10_seed0"]
    assert r["seeds"] == [0, 1] and r["variants"] == ["x0", "x0_detail10"]
    # (a detail weight left unresolved would have failed the run: its loss refuses it)
    configs = {run: json.loads((tmp_path / "models" / run / "config.json").read_text())["config"] for run in r["runs"]}
    assert configs["x0_seed1"]["objective"]["detail_weight"] == 1.0 and configs["x0_seed1"]["seed"] == 1
    assert configs["x0_detail10_seed0"]["objective"]["detail_weight"] == 10.0 and configs["x0_detail10_seed0"]["seed"] == 0
    assert json.loads((tmp_path / "seeds" / "x0_seed1.json").read_text())["seed"] == 1
    assert "mean x0" not in (tmp_path / "report.md").read_text()  # one seed of each variant: no interval columns
    # the in-process realism phase only: no evaluate, no shared nets trained
    assert r["eval_phases"] == {} and not (tmp_path / "tissue_net").exists() and not (tmp_path / "feature_net").exists()
    assert set(r["summary"]) == {"x0", "x0_detail10"} and r["summary"]["x0_detail10"]["histogram_w1_t1n"]["n"] == 1
    assert set(r["spectrum_log10_ratio_per_band"]) == set(r["runs"])
    assert all(len(bands) == 8 for per in r["spectrum_log10_ratio_per_band"].values() for bands in per.values())
    assert "x0_detail10_seed0" in (tmp_path / "report.md").read_text()


def test_quality_scale_splits_a_vae_arms_minutes_between_its_two_stages(monkeypatch, tmp_path):
    """A VAE arm's budget is the run's --minutes in all: the autoencoder's config (images only, stage vae) gets
    VAE_STAGES' share and the diffusion on its latents the rest, reading the codec the first exports; the user's
    --set reaches the diffusion only (its train.max_steps would cut the VAE short)."""
    import argparse

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality_scale

    args = argparse.Namespace(overrides=["train.max_steps=4900"], runs=[("vae_maskcond", 1),
                              ("x0_pixel_skip005_maskcond", 0)], variants=None, seeds=1, device="cpu", smoke=False,
                              minutes=8.0)
    p = dict(quality_scale.FULL, workers=1)
    paths = quality_scale.resolve_configs(args, p, tmp_path)
    assert [x.name for x in paths] == ["vae_maskcond_seed1.yaml", "x0_pixel_skip005_maskcond_seed0.yaml"]
    vae = load_config(quality_scale.vae_config_path(tmp_path, "vae_maskcond_seed1"))
    ldm = load_config(paths[0])
    assert vae.stage == "vae" and vae.data.label_mode == "none" and vae.seed == 1 and vae.train.max_steps != 4900
    assert vae.train.max_minutes + ldm.train.max_minutes == pytest.approx(8.0) and vae.train.max_minutes == 3.2
    assert ldm.latent.type == "pretrained" and ldm.latent.path == str(quality_scale.vae_codec_dir(tmp_path, "vae_maskcond_seed1"))
    assert ldm.conditioning.mask and not ldm.conditioning.generate_labels and ldm.train.max_steps == 4900
    assert vae.data.roi == ldm.data.roi and vae.data.spacing == ldm.data.spacing  # one grid for both stages
    pixel = load_config(paths[1])
    assert pixel.latent.levels == 0 and pixel.conditioning.mask and pixel.train.max_minutes == 8.0
    assert not quality_scale.vae_config_path(tmp_path, "x0_pixel_skip005_maskcond_seed0").exists()


@pytest.mark.slow
def test_quality_scale_trains_a_vae_arm_and_a_pixel_arm_mask_conditioned(tmp_path):
    """Issue 16's wavelet / pixel / VAE row on the mask-conditioned second stage, end to end in smoke: the VAE arm
    trains its autoencoder, exports the codec, trains the diffusion on its latents, generates for training masks."""
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu",
          "--runs", "vae_maskcond:0", "x0_pixel_skip005_maskcond:0", "--phases", "realism"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert not any(r["exits"].values()) and list(r["runs"]) == ["vae_maskcond_seed0", "x0_pixel_skip005_maskcond_seed0"]
    assert r["run_records"]["vae_maskcond_seed0"]["vae"]["steps"] == 2
    assert (tmp_path / "codecs" / "vae_maskcond_seed0" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(r["runs"])  # models/: diffusion only
    for run in r["runs"]:
        assert r["run_records"][run]["generated"] == 2


@pytest.mark.slow
def test_quality_scale_smoke_generates_a_mask_conditioned_run_for_training_masks_only(tmp_path):
    """The mask-conditioned variant (Med-DDPM's split): trained with the masks in, generated for the first training
    cases' masks on the model grid, never a held-out (fold 0) case's, and read by the tumour checks as any set."""
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu",
          "--runs", "x0_detail100_skip005_maskcond:0", "--phases", "realism"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    run = "x0_detail100_skip005_maskcond_seed0"
    assert not any(r["exits"].values()) and list(r["runs"]) == [run]
    cond = json.loads((tmp_path / "models" / run / "config.json").read_text())["config"]["conditioning"]
    assert cond["mask"] and not cond["generate_labels"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    folds = {it["case_id"]: it["fold"] for it in manifest["training"]}
    used = sorted(f.name.split(".")[0] for f in (tmp_path / "masks" / run).glob("*.nii.gz"))
    assert used and all(folds[c] != 0 for c in used), (used, folds)
    cases = sorted((tmp_path / "generated" / run).glob("case_*"))
    assert cases and all((c / "seg.nii.gz").is_file() for c in cases)
    assert all("mask" in json.loads((c / "provenance.json").read_text()) for c in cases)
    assert "tumour_share" in r["summary"]["x0_detail100_skip005_maskcond"]


@pytest.mark.slow
def test_quality_scale_smoke_two_stages_generate_images_for_the_joint_models_labels(tmp_path):
    """--mask-source: the mask-conditioned run draws the images for the labels the joint run generated, case by
    case, and writes those labels back as its own (no real case's mask)."""
    import nibabel as nib

    source, run = "x0_detail100_labels_lll100_skip005_seed0", "x0_detail100_skip005_maskcond_seed0"
    _run(["benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--runs",
          "x0_detail100_labels_lll100_skip005:0", "x0_detail100_skip005_maskcond:0", "--mask-source", source,
          "--phases", "realism"])
    r = json.loads((tmp_path / "quality_scale.json").read_text())
    assert not any(r["exits"].values()) and r["mask_source"] == source
    cases = sorted((tmp_path / "generated" / run).glob("case_*"))
    assert [c.name for c in cases] == [c.name for c in sorted((tmp_path / "generated" / source).glob("case_*"))]
    for c in cases:
        ours, theirs = (np.asarray(nib.load(d / c.name / "seg.nii.gz").dataobj) for d in
                        (tmp_path / "generated" / run, tmp_path / "generated" / source))
        assert np.array_equal(ours, theirs), c.name
        mask = json.loads((c / "provenance.json").read_text())["mask"]  # the first model recorded, not a file name
        assert mask["generated_case"] == c.name and mask["training_data"]["fold"] == 0
        # the images from their own noise, not from the noise that drew the labels (the first stage's seeds 0..)
        assert json.loads((c / "provenance.json").read_text())["seed"] != mask["seed"]
    assert "the two-stage recipe" in (tmp_path / "report.md").read_text()


def test_quality_scale_refuses_a_mask_source_that_is_no_labelled_run(tmp_path):
    base = [sys.executable, "benchmarks/quality_scale.py", "--out", str(tmp_path), "--smoke", "--device", "cpu",
            "--runs", "x0_detail100_labels_lll100_skip005:0", "x0_detail100_skip005_maskcond:0", "--mask-source"]
    for source, why in (("nope_seed0", "not one of the runs"),
                        ("x0_detail100_skip005_maskcond_seed0", "generates no labels of its own")):
        proc = subprocess.run([*base, source], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr[-800:]
    assert not (tmp_path / "data").exists()  # refused before any work


def _quality_scale(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its imports of quality_common / quality_ablation
    return importlib.import_module("quality_scale")


def test_quality_scale_reads_enough_real_cases_by_default_for_a_spread_verdict(monkeypatch):
    """The realism phase's default real cases give the spread check a verdict at any generated count the
    held-out fold can cover (64 generated against the former fixed 48 held-out gave none)."""
    import numpy as np

    from medidiff.eval.realism import spread_check

    qs = _quality_scale(monkeypatch)
    rng = np.random.default_rng(0)
    for n in (2, 8, 24, 64):
        k = qs.default_realism_cases(n)
        assert k >= 48
        r = spread_check(rng.normal(size=(n, 2)), rng.normal(size=(k, 2)), rng.normal(size=(k, 2)), names=["a", "b"])
        assert r["pass"] is not None, (n, k, r.get("note"))


def test_quality_scale_reuses_evaluation_nets_trained_on_the_same_manifest_only(monkeypatch, tmp_path):
    from medidiff.files import file_sha256

    qs = _quality_scale(monkeypatch)
    out, source = tmp_path / "out", tmp_path / "nets"
    out.mkdir()
    (out / "manifest.json").write_text('{"cases": []}')
    for name, manifest in (("feature_net", file_sha256(out / "manifest.json")), ("tissue_net", "0" * 64)):
        (source / name).mkdir(parents=True)
        (source / name / "config.json").write_text(json.dumps({"kind": name, "recipe": {"manifest_sha256": manifest}}))
        (source / name / "model.safetensors").write_bytes(b"weights")
    # the tissue net was trained on another manifest (evaluate would refuse it): trained again
    assert qs.reuse_nets(str(source), ["feature_net", "tissue_net"], out) == ["feature_net"]
    assert (out / "feature_net" / "model.safetensors").read_bytes() == b"weights" and not (out / "tissue_net").exists()
    assert qs.reuse_nets(str(tmp_path / "none"), ["feature_net"], out) == []  # nothing there: trained here
    assert qs.reuse_nets(str(out), ["feature_net"], out) == ["feature_net"]  # --nets OUT: in place, not deleted
    assert (out / "feature_net" / "model.safetensors").is_file()
    (source / "feature_net" / "model.safetensors").unlink()  # a recipe without its weights: trained again
    assert qs.reuse_nets(str(source), ["feature_net"], out) == []


def test_quality_scale_trains_runs_one_at_a_time_only_when_asked(monkeypatch):
    qs = _quality_scale(monkeypatch)
    runs, nets = {"a": ["A"], "b": ["B"]}, {"tissue_net": ["T"]}
    assert qs.training_groups(runs, nets, nets_after=False, one_at_a_time=False) == [{**runs, **nets}]
    assert qs.training_groups(runs, nets, nets_after=True, one_at_a_time=False) == [runs, nets]
    # each run alone, in the given order, and the nets after them either way
    for after in (False, True):
        assert qs.training_groups(runs, nets, nets_after=after, one_at_a_time=True) == [{"a": ["A"]}, {"b": ["B"]}, nets]


def test_quality_scale_runs_are_variant_by_seed_or_the_pairs_given(monkeypatch):
    import argparse

    qs = _quality_scale(monkeypatch)
    assert qs.run_names(["x0"], 2) == {"seed0": ("x0", 0), "seed1": ("x0", 1)}  # the shipped names pack_pretrained reads
    assert list(qs.run_names(["x0", "x0_detail10"], 1)) == ["x0_seed0", "x0_detail10_seed0"]
    # --runs: two more seeds of one recipe beside another at a seed they share, nothing else
    pairs = [qs.parse_run("x0_detail10:1"), qs.parse_run("x0_detail10:2"), qs.parse_run("x0:1")]
    assert qs.run_names(["ignored"], 5, pairs) == {"x0_detail10_seed1": ("x0_detail10", 1),
                                                   "x0_detail10_seed2": ("x0_detail10", 2), "x0_seed1": ("x0", 1)}
    for bad in ("x0", "x0:-1", "nope:1", "x0:one"):
        with pytest.raises(argparse.ArgumentTypeError, match="VARIANT:SEED"):
            qs.parse_run(bad)


def test_quality_scale_utility_seeds_train_every_segmenter_in_the_phase(monkeypatch, tmp_path):
    """--utility-seeds: the plateau reading's segmenters, the all-real one too, at the same epochs and seeds (the
    shared feature net is width 6, 6 epochs, seed 0); the other phases keep the shared net and seed 0."""
    qs = _quality_scale(monkeypatch)
    args = SimpleNamespace(device="cpu", eval_epochs=30, eval_steps=None, eval_real=None, smoke=False)

    def words(phase: str) -> tuple[list[str], bool]:
        cmd = qs.evaluate_command(args, tmp_path, "r_seed0", phase)
        i = cmd.index("--seeds")
        seeds = list(itertools.takewhile(lambda w: not w.startswith("--"), cmd[i + 1:]))
        return seeds, "--feature-net" in cmd

    assert words("utility") == (["0"], True) and words("fidelity") == (["0"], True)  # as before: no attribute
    args.utility_seeds = [0, 1]
    assert words("utility") == (["0", "1"], False)
    assert words("fidelity") == (["0"], True) and words("image") == (["0"], True)
    assert qs.shares_net(args, "image") and not qs.shares_net(args, "utility")
    cmd = qs.evaluate_command(args, tmp_path, "r_seed0", "utility")
    assert cmd[cmd.index("--epochs") + 1] == "30"


def test_quality_scale_reads_frechet_against_every_real_case_and_caps_the_rest(monkeypatch, tmp_path):
    """--eval-real N: the image phase loads every real case (its Frechet against the whole training fold) and caps
    its realism checks at the N max_real would give; fidelity and tissue load N a side; the audit every case."""
    qs = _quality_scale(monkeypatch)
    args = SimpleNamespace(device="cpu", eval_epochs=1, eval_steps=None, eval_real=192, smoke=False)

    def sets(phase: str) -> list[str]:
        cmd = qs.evaluate_command(args, tmp_path, "r_seed0", phase)
        return [cmd[i + 1] for i, w in enumerate(cmd) if w == "--set" and "max_real" in cmd[i + 1]]

    assert sets("image") == ["eval.realism_max_real=192"]
    assert sets("fidelity") == sets("tissue") == ["eval.max_real=192"] and sets("memorisation") == []
    args.eval_real = 0  # all, everywhere
    assert all(sets(p) == [] for p in ("image", "fidelity", "tissue"))
    record = {"eval_real": 192, "image_whole_fold": True}
    assert "every real training case" in qs._real_cases_wording(record, "image")
    assert qs._real_cases_wording({"eval_real": 192}, "image") == ", 192 real cases a side"  # an older job's report


def test_quality_scale_evaluates_every_run_on_the_shipped_intensity_scale(monkeypatch, tmp_path):
    from medidiff.config import save_resolved

    qs = _quality_scale(monkeypatch)
    (tmp_path / "configs").mkdir()
    scale = [k for k in qs.VARIANTS["x0_detail100_labels_lll100_skip005_scaleout"] if k.startswith("data.percentile")]
    assert scale == ["data.percentile_region=outside_tumour", "data.percentile_top=0.0"]
    save_resolved(load_config(None, scale), tmp_path / "configs", "scaleout_seed0.yaml")
    scaleout = qs.run_config_path(tmp_path, "scaleout_seed0")
    assert load_config(scaleout).data.percentile_region == "outside_tumour"
    # a run on another scale, first or alone, is read on the shipped model's: the same words whatever the runs
    shipped = load_config(None, []).data
    assert qs.eval_scale_overrides() == ["data.percentiles=[0.5, 99.5]", "data.percentile_region=brain",
                                         "data.percentile_top=1.0"]
    assert (shipped.percentile_region, shipped.percentile_top) == ("brain", 1.0)
    judged = load_config(scaleout, qs.eval_scale_overrides()).data  # evaluate's --set takes them
    assert (judged.percentile_region, judged.percentile_top) == ("brain", 1.0)
    args = SimpleNamespace(device="cpu", eval_epochs=1, eval_steps=None, eval_real=None, smoke=False)
    cmd = qs.evaluate_command(args, tmp_path, "scaleout_seed0", "image")
    assert [cmd[i + 1] for i, w in enumerate(cmd) if w == "--set"] == qs.eval_scale_overrides()
    # ... and so are the in-process realism and audit and the shared nets evaluate loads (a net refuses another scale)
    seen = {"realism": []}
    monkeypatch.setattr(qs, "realism_checks_of", lambda *a, sets=None, **k: seen["realism"].append(sets))
    monkeypatch.setattr(qs, "memorisation_audits_of", lambda *a, sets=None, **k: seen.setdefault("audit", sets))
    import medidiff.eval
    monkeypatch.setattr(medidiff.eval, "train_feature_net", lambda exp, cfg, **k: seen.setdefault("net", exp.data))
    qs.realism_phase(tmp_path, ["scaleout_seed0"], 4, "scaleout_seed0")
    qs.memorisation_phase(tmp_path, ["scaleout_seed0"], {"eval_phases": {"memorisation": {"runs": {}}}, "exits": {}},
                          "scaleout_seed0")
    run_args = SimpleNamespace(variants=[], seeds=1, runs=[("scaleout", 0)], eval_epochs=1, eval_steps=None, device="cpu")
    qs.run_shared_net(run_args, tmp_path, "feature_net")
    assert seen["audit"] == qs.eval_scale_overrides()
    # the realism phase reads on the shipped scale, then again on the normal brain's (its keys last: they win)
    assert seen["realism"] == [qs.eval_scale_overrides(), qs.normal_brain_scale_overrides()]
    second = load_config(scaleout, qs.normal_brain_scale_overrides())
    assert (second.data.percentile_region, second.data.percentile_top, list(second.data.percentiles)) == (
        "outside_tumour", 0.0, [0.5, 99.5])
    from medidiff.eval.data import eval_data_config
    assert second.eval.intensity_scale == "config"  # else evaluate would read it on the brain's scale again
    assert eval_data_config(second.data, second.eval.intensity_scale).percentile_region == "outside_tumour"
    assert (seen["net"].percentile_region, seen["net"].percentile_top) == ("brain", 1.0)


def test_quality_scale_evaluates_a_given_model_only_as_the_recipe_and_data_it_was_trained_on(monkeypatch, tmp_path):
    from medidiff.config import ConfigError, save_resolved, to_dict
    from medidiff.data.mask_sources import training_data_record
    from medidiff.errors import MedidiffError

    qs = _quality_scale(monkeypatch)
    run_config = save_resolved(load_config(None, ["seed=1", "train.max_steps=4900"]), tmp_path, "run.yaml")
    model = tmp_path / "model"
    model.mkdir()

    def export(**changes):  # a model folder trained with the run's config and these dotted keys changed
        config = to_dict(load_config(run_config, [f"{k}={v}" for k, v in changes.items()]))
        del config["objective"]["edge_weight"]  # saved before the setting existed: compares as its default
        (model / "config.json").write_text(json.dumps({"config": config, "step": 4901, "training_data": data}))

    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"training": []}')
    data = training_data_record({"manifest": str(manifest), "fold": 0})
    export()
    with pytest.raises(ConfigError, match="not an exported model folder"):  # no weights beside it
        qs.check_model_recipe(model, run_config)
    (model / "model.safetensors").write_bytes(b"weights")
    # where files are, the length and the data's folder may differ; the recipe and seed may not
    export(**{"train.max_steps": 100, "train.max_minutes": 5, "output_dir": "/elsewhere", "data.root": "/x"})
    qs.check_model_recipe(model, run_config)
    for key, value in (("objective.detail_weight", 100), ("seed", 0), ("data.fold", 1), ("sampler.num_steps", 7)):
        export(**{key: value})
        with pytest.raises(ConfigError, match=rf"trained with another recipe than run.yaml \({key}\)"):
            qs.check_model_recipe(model, run_config)
    export()
    qs.check_model_data(model, manifest)
    manifest.write_text('{"training": [], "medidiff": {"root_hint": "/another/folder"}}')
    with pytest.raises(MedidiffError, match="evaluate it on its own data"):
        qs.check_model_data(model, manifest)


def test_quality_scale_interval_over_seeds_is_the_student_t_interval(monkeypatch):
    qs = _quality_scale(monkeypatch)
    s = qs.summarise_over_seeds([1.0, 2.0, 3.0])
    # mean 2, std 1 (ddof 1), t(0.975, 2) = 4.302653: half width 4.302653 / sqrt(3)
    half = 4.302652729911275 / 3 ** 0.5
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == 1.0 and (s["min"], s["max"]) == (1.0, 3.0)
    assert s["t95"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-9)
    # a failed seed (nan / missing) is left out and counted in n; one value has no interval
    assert qs.summarise_over_seeds([float("nan"), 5.0, None]) == {"n": 1, "mean": 5.0, "min": 5.0, "max": 5.0,
                                                                  "std": None, "t95": None}
    assert qs.summarise_over_seeds([])["mean"] is None


def test_quality_scale_says_a_utility_row_is_one_evaluation(monkeypatch):
    """On a GPU one evaluation's sign of real + synthetic - real flipped in the next (utility_matched_h100_20261208):
    the report says so under the table wherever a run has utility rows, and not elsewhere."""
    qs = _quality_scale(monkeypatch)

    record = {"per_run": {"a": {"frechet_3d": 5.0}, "b": {"utility_gain_WT": -0.005, "utility_ratio_WT": 0.98}}}
    assert qs.utility_spread_lines(record, ["a"]) == []
    line = qs.utility_spread_lines(record, ["a", "b"])
    assert len(line) == 1 and "a verdict needs several evaluations" in line[0]


def test_quality_scale_reads_the_scores_of_an_evaluate_report(monkeypatch):
    qs = _quality_scale(monkeypatch)
    report = {"results": {
        "realism": {"checks": {
            "background": {"synthetic_rms": 0.002, "synthetic_fraction_nonzero": 0.35},
            "power_spectrum": {"per_modality": {"t1n": {"max_abs_log10_ratio": 0.9, "floor": 0.03,
                                                        "log10_ratio_per_band": [0.1, -0.3, -0.9]}}},
            "intensity_histogram": {"per_modality": {"t1n": {"wasserstein": 0.08, "floor": 0.01}}},
            "detail_coherence": {"per_modality": {"t1n": {"difference": -0.06, "floor": 0.01}}}}},
        "image": {"distances": {"synthetic_vs_real_train": {"3d": {"frechet": 55.0, "frechet_interval": [40.0, 70.0],
                                                                        "frechet_se": 7.65, "jackknife_cases": 64}},
                                "real_heldout_vs_real_train": {"3d": {"frechet": 5.0}}},
                  "prdc": {"synthetic_vs_real_train": {"precision": 0.44, "recall": 0.66, "density": 0.12, "coverage": 0.02},
                           "real_heldout_vs_real_train": {"precision": 1.0, "recall": 0.98, "density": 1.0, "coverage": 0.46,
                                                          "coverage_range": [0.38, 0.5]}},
                  "prdc_reading": {"pass": False}},
        "tissue": {"synthetic_vs_real": {"metrics": {
            "fraction_CSF": {"pass": False, "synthetic_mean": 0.083, "real_mean": 0.064},
            "wm_gm_contrast_t1n": {"pass": True, "synthetic_mean": 0.23, "real_mean": 0.2},
            "csf_share_surface": {"pass": True, "synthetic_mean": None, "real_mean": 0.19}}}},
        "memorisation": {"summary": {"flagged": 5, "threshold": 0.96, "synthetic_nn_similarity": {"n": 8, "max": 0.999},
                                     "control_heldout_real": {"flagged": 0}}},
    }}
    m = qs.eval_metrics(report)
    assert m["spectrum_top_band_ratio_t1n"] == pytest.approx(10 ** -0.9)  # the last band, synthetic / real power
    assert m["frechet_3d_low"] == 40.0 and m["frechet_3d_high"] == 70.0 and m["frechet_3d_se"] == 7.65
    # what Frechet mixes, split: each figure beside its floor, and the verdict
    assert (m["prdc_precision"], m["prdc_coverage"], m["prdc_coverage_floor"], m["prdc_pass"]) == (0.44, 0.02, 0.46, 0.0)
    # an older report (no interval) gives no interval rows, and no difference line; a job's runs compare by
    # the difference's interval: 55 +- 7.65 against 20 +- 2 is farther from real, against 50 +- 5 no difference
    older = json.loads(json.dumps(report))
    del older["results"]["image"]["distances"]["synthetic_vs_real_train"]["3d"]["frechet_se"]
    assert not {"frechet_3d_low", "frechet_3d_se"} & set(qs.eval_metrics(older))
    record = {"runs": {"base": {"variant": "a"}, "arm": {"variant": "b"}, "near": {"variant": "b"}, "old": {"variant": "c"}},
              "per_run": {"base": {"frechet_3d": 20.0, "frechet_3d_se": 2.0, "frechet_3d_cases": 64}, "arm": m,
                          "near": {"frechet_3d": 50.0, "frechet_3d_se": 5.0, "frechet_3d_cases": 64},
                          "old": {"frechet_3d": 30.0}}}
    lines = qs.frechet_difference_lines(record, ["base", "arm", "near", "old"])
    assert "old has no interval" in lines[1] and len(lines) == 5  # every pair of the three with one, after the note
    assert "arm - base: +35.00" in lines[2] and "farther from real" in lines[2] and "independent" in lines[2]
    assert "near - base" in lines[3] and "farther" in lines[3]
    assert "near - arm" in lines[4] and "not resolved" in lines[4] and "the same recipe" in lines[4]
    record["per_run"]["near"]["frechet_3d_cases"] = 32  # another count: another small-sample bias, no reading
    assert "different case counts" in qs.frechet_difference_lines(record, ["arm", "near"])[1]
    # recipes with several seeds compare by their means, with the seeds' spread (training runs and draws) in the
    # interval: 20/22/24 against 40/44/48 is resolved (+22, Welch df ~2.9), against 18/24/30 it is not; a
    # variant of one seed has no mean line, and figures at another case count are not compared
    seeds = {"runs": {f"{v}{i}": {"variant": v} for v in "abc" for i in range(3 if v != "c" else 1)},
             "variants": ["a", "b", "c"], "per_run": {}}
    for run, f in zip(seeds["runs"], (20.0, 22.0, 24.0, 40.0, 44.0, 48.0, 30.0)):
        seeds["per_run"][run] = {"frechet_3d": f, "frechet_3d_cases": 64}
    (line,) = qs.variant_mean_difference_lines(seeds)
    assert line.startswith("- Frechet 3D, mean of b (3 seeds) - mean of a (3): +22.00 [")
    lo, hi = (float(v) for v in line.split("[")[1].split("]")[0].split(", "))
    assert 13.0 < lo < 15.0 and 29.0 < hi < 31.0 and "farther from real" in line
    assert line in qs.frechet_difference_lines(seeds, list(seeds["runs"]))
    for run, f in zip(["b0", "b1", "b2"], (18.0, 24.0, 30.0)):
        seeds["per_run"][run]["frechet_3d"] = f
    assert "not resolved by these seeds" in qs.variant_mean_difference_lines(seeds)[0]
    seeds["per_run"]["b2"]["frechet_3d_cases"] = 32
    assert "different case counts" in qs.variant_mean_difference_lines(seeds)[0]
    for run, f in zip(["a0", "a1", "a2", "b0", "b1", "b2"], (20.0, 20.0, 20.0, 30.0, 30.0, float("nan"))):
        seeds["per_run"][run].update(frechet_3d=f, frechet_3d_cases=64)  # no spread: no interval; a failed seed out
    (line,) = qs.variant_mean_difference_lines(seeds)
    assert "mean of b (2 seeds) - mean of a (3): +10.00 (no interval" in line
    assert m["frechet_over_floor"] == 11.0 and m["tissue_qc_pass"] == 2 and m["tissue_qc_checks"] == 3
    # the goals' readings beside their real means; a reading evaluate could not make is left out
    assert (m["tissue_fraction_CSF"], m["tissue_real_fraction_CSF"]) == (0.083, 0.064)
    assert m["tissue_contrast_error_t1n"] == pytest.approx(0.15) and "tissue_csf_share_surface" not in m
    assert m["memorisation_flagged"] == 5 and m["memorisation_cases"] == 8 and m["histogram_w1_t1n"] == 0.08
    assert m["eval_background_rms"] == 0.002
    # the tumour check's own verdicts are rows, beside the share and the sizes' W1 it judges
    tumours = {"share_with_tumour": {"synthetic": 0.59, "real": 0.85, "pass": False},
               "size_log10_wt_fraction": {"wasserstein": 0.11, "pass": True}, "pass": False}
    t = qs.eval_metrics({"results": {"realism": {"checks": {"tumour_statistics": tumours}}}})
    assert (t["tumour_share"], t["tumour_share_pass"], t["tumour_size_pass"]) == (0.59, 0.0, 1.0)
    assert "tumour_several_share" not in t and "tumour_several_pass" not in t  # reports before session 35
    tumours["share_with_several_tumours"] = {"synthetic": 0.3, "real": 0.0, "pass": False}
    tumours["et_share_of_wt_log10"] = {"synthetic_median": -0.62, "real_median": -0.74, "pass": True}
    t = qs.eval_metrics({"results": {"realism": {"checks": {"tumour_statistics": tumours}}}})
    assert (t["tumour_several_share"], t["tumour_several_share_real"], t["tumour_several_pass"]) == (0.3, 0.0, 0.0)
    assert t["et_share_of_wt_vs_real"] == pytest.approx(0.12) and t["et_share_of_wt_pass"] == 1.0
    # which real side the realism rows read: the image phase's where it finished (it replaces the quick phase's)
    quick, image = {"results": {"realism": {}}}, {"results": {"image": {}, "realism": {}}}
    assert qs.realism_source({"realism": quick, "image": image}) == "image"
    assert qs.realism_source({"realism": quick, "image": {"results": {"image": {}}}}) == "realism"  # cut before it
    assert qs.realism_source({"realism": quick}) == "realism" and qs.realism_source({}) is None
    # the per-band spectra follow the rows' side: an image phase cut before its realism task leaves the quick one's
    spectrum = {"checks": {"power_spectrum": {"per_modality": {"t1n": {"log10_ratio_per_band": [0.1, -0.2]}}}}}
    quick_s, image_s = {"results": {"realism": spectrum}}, {"results": {"image": {}, "realism": {"checks": {
        "power_spectrum": {"per_modality": {"t1n": {"log10_ratio_per_band": [0.3, 0.4]}}}}}}}
    assert qs.realism_bands({"realism": quick_s, "image": image_s}) == {"t1n": [0.3, 0.4]}
    assert qs.realism_bands({"realism": quick_s, "image": {"results": {"image": {}}}}) == {"t1n": [0.1, -0.2]}
    assert qs.realism_bands({}) == {}
    assert "core_present_share" not in t and "core_share_of_wt_pass" not in t  # reports before session 61
    tumours["share_with_core"] = {"synthetic": 0.7, "real": 0.9, "pass": False}
    tumours["core_share_of_wt_log10"] = {"synthetic_median": -0.9, "real_median": -0.6, "pass": False}
    t = qs.eval_metrics({"results": {"realism": {"checks": {"tumour_statistics": tumours}}}})
    assert (t["core_present_share"], t["core_present_share_real"], t["core_present_pass"]) == (0.7, 0.9, 0.0)
    assert t["core_share_of_wt_vs_real"] == pytest.approx(-0.3) and t["core_share_of_wt_pass"] == 0.0
    assert m["coherence_vs_real_t1n"] == -0.06 and m["coherence_floor_t1n"] == 0.01  # < 0: grainier than real
    # the evaluation runs in phases, each its own report: the seed's scores are those of all of them
    # together, and a phase that never finished leaves out only its own scores
    tissue = {"results": {"tissue": report["results"].pop("tissue")}}
    assert qs.eval_metrics(report, tissue) == m
    assert qs.eval_metrics(report) == {k: v for k, v in m.items() if not k.startswith("tissue_")}
    assert qs.eval_metrics() == {}
    # the realism phase's second reading, on the outside-the-tumour scale, adds its own histogram rows beside them
    second = {"results": {qs.NORMAL_BRAIN_REALISM: {"checks": {"intensity_histogram": {"per_modality": {
        "t1n": {"wasserstein": 0.02, "floor": 0.004}}}}}}}
    assert qs.eval_metrics(report, tissue, second) == m | {"histogram_w1_outside_tumour_t1n": 0.02,
                                                           "histogram_w1_outside_tumour_floor_t1n": 0.004}
    # the t1c histogram's parts: the ET's contrast from the outside-the-tumour reading (the shipped scale clips
    # the ET), the stray bright voxels and the check's verdict from the shipped-scale reading; < 0: too dark, stray
    second["results"][qs.NORMAL_BRAIN_REALISM]["checks"]["tumour_contrast"] = {
        "et_contrast": {"t1c": {"synthetic_median": 0.94, "real_median": 1.21}},
        "et_upper": {"t1c": {"synthetic_median": 1.12, "real_median": 1.39}},
        "ed_contrast": {"t2f": {"synthetic_median": 0.93, "real_median": 0.72}},
        "ncr_contrast": {"t2w": {"synthetic_median": -0.10, "real_median": 0.45}}, "pass": True}
    shipped = {"results": {"realism": {"checks": {"tumour_contrast": {
        "et_contrast": {"t1c": {"synthetic_median": 1.0, "real_median": 1.0}},
        "top_in_tumour": {"t1c": {"synthetic_median": 0.68, "real_median": 0.98}}, "pass": False}}}}}
    parts = qs.eval_metrics(shipped, second)
    assert parts["et_contrast_vs_real_t1c"] == pytest.approx(-0.27) and parts["tumour_contrast_pass"] == 0.0
    assert parts["top_in_tumour_vs_real_t1c"] == pytest.approx(-0.30) and "et_contrast_vs_real_t1n" not in parts
    assert parts["et_upper_vs_real_t1c"] == pytest.approx(-0.27)  # the ET's bright end, the same scale as its median
    assert parts["ed_contrast_vs_real_t2f"] == pytest.approx(0.21)  # the edema, read as the ET is
    assert parts["ncr_contrast_vs_real_t2w"] == pytest.approx(-0.55)  # the core too (read, not judged)
    # fidelity and utility: the goals' ratios (equal N: the size-matched real set; a non-finite ratio is a string)
    agg = lambda wt, tc, et: {"aggregate": {"WT": {"dice_mean": wt}, "TC": {"dice_mean": tc}, "ET": {"dice_mean": et}}}  # noqa: E731
    def presence(with_wt, with_tc, without_wt):  # by_tumour_presence as report.json writes it
        return {"with_region": {"WT": {"cases": 6, "dice_mean": with_wt}, "TC": {"cases": 6, "dice_mean": with_tc},
                                "ET": {"cases": 6, "dice_mean": 0.5}},
                "without_region": {r: {"cases": 2, "dice_mean": without_wt} for r in ("WT", "TC", "ET")}}

    # the goal's fidelity ratio compares the cases with a tumour (over all cases it read the tumour-free share)
    extra = {"results": {
        "fidelity": {**agg(0.5, 0.5, 0.5), "by_tumour_presence": presence(0.9, "nan", 0.0),
                     "dice_ratio_to_real": {"WT": 0.6, "TC": 0.6, "ET": 0.6},  # (over all cases: not read)
                     "real_heldout": {**agg(0.8, 0.9, 0.9), "by_tumour_presence": presence(1.0, 0.9, 0.0)}},
        "utility": {"training_sets": {"real": agg(0.8, 0.6, 0.4), "real_matched": agg(0.5, 0.4, 0.0),
                                      "synthetic": agg(0.45, 0.2, 0.1), "real+synthetic": agg(0.82, 0.55, 0.4)}}}}
    u = qs.eval_metrics(extra)
    assert u["fidelity_ratio_WT"] == pytest.approx(0.9) and math.isnan(u["fidelity_ratio_TC"]) and "fidelity_ratio_ET" not in u
    assert u["fidelity_wt_dice_with_tumour"] == 0.9 and u["fidelity_tumour_free_cases"] == 2
    # utility over all test cases; a report written before the split gives no goal reading
    assert u["utility_ratio_all_cases_WT"] == pytest.approx(0.9) and u["utility_ratio_all_cases_TC"] == pytest.approx(0.5)
    assert math.isnan(u["utility_ratio_all_cases_ET"]) and u["utility_gain_all_cases_TC"] == pytest.approx(-0.05)
    assert math.isnan(u["utility_ratio_WT"]) and math.isnan(u["utility_gain_TC"])

    # the goal's utility reading is on the test cases with the region. Known bad: real + synthetic predicts nothing
    # on the tumour-free test cases (1 there), gains over all cases and finds the tumours worse (2026-12-03: TC
    # +0.09 over all cases, -0.03 on the tumours): the gain goal reads the loss
    def split(wt, tc, et, empty):
        return {"by_tumour_presence": {
            "with_region": {r: {"cases": 6, "dice_mean": v} for r, v in zip(("WT", "TC", "ET"), (wt, tc, et))},
            "without_region": {r: {"cases": 2, "dice_mean": empty} for r in ("WT", "TC", "ET")}}}
    sets = extra["results"]["utility"]["training_sets"]
    for name, (wt, tc, et, empty) in {"real": (0.9, 0.7, 0.5, 0.0), "real_matched": (0.6, 0.5, 0.0, 0.0),
                                      "synthetic": (0.54, 0.25, 0.1, 0.0), "real+synthetic": (0.85, 0.6, 0.45, 1.0)}.items():
        sets[name].update(split(wt, tc, et, empty))
    sets["real+synthetic"]["aggregate"]["TC"]["dice_mean"] = 0.65  # over all cases: above real's 0.6
    sets["real"]["by_tumour_presence"]["with_region"]["ET"]["dice_mean"] = "nan"  # as report.json writes it
    u = qs.eval_metrics(extra)
    assert u["utility_ratio_WT"] == pytest.approx(0.9) and u["utility_ratio_TC"] == pytest.approx(0.5)
    assert math.isnan(u["utility_ratio_ET"])  # the size-matched real set found no ET
    assert u["utility_gain_all_cases_TC"] == pytest.approx(0.05) and u["utility_gain_TC"] == pytest.approx(-0.1)
    assert math.isnan(u["utility_gain_ET"])  # no crash on a region no test case holds


def test_quality_scale_stops_an_evaluation_phase_at_its_cap_and_names_what_is_missing(monkeypatch, tmp_path):
    import argparse
    import time

    qs = _quality_scale(monkeypatch)
    # seed 0's evaluation finishes, seeds 1 and 2 would run for a minute: the phase's cap (1.2 s) stops both
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    cmds = {0: [sys.executable, "-c", "pass"], 1: sleeper, 2: sleeper}
    monkeypatch.setattr(qs, "evaluate_command", lambda args, out, run, phase: cmds[int(run[-1])])
    (tmp_path / "feature_net").mkdir()
    (tmp_path / "feature_net" / "config.json").write_text("{}")  # present: no seed trains it first
    runs = [f"seed{s}" for s in cmds]
    record = {"exits": {}, "eval_phases": {"image": {"seconds": None, "runs": {run: "not finished" for run in runs}}}}
    t0 = time.monotonic()
    qs.run_eval_phase(argparse.Namespace(eval_minutes=0.02, gpus=1), tmp_path, "image", runs, record)
    assert time.monotonic() - t0 < 15  # the sleeper was stopped, not waited for
    assert record["exits"] == {"eval_seed0_image": 0, "eval_seed1_image": 124, "eval_seed2_image": 124}
    stopped = "stopped at the 0.02-min cap"
    assert record["eval_phases"]["image"]["runs"] == {"seed0": "done", "seed1": stopped, "seed2": stopped}
    assert qs.missing_evaluations(record) == [f"seed1 image ({stopped})", f"seed2 image ({stopped})"]


@pytest.mark.slow  # 60-66 s on the 2 shared cores (two launches of two DeepSpeed processes), over the 60 s bar
def test_scaling_bench_smoke_two_groups_stop_together_on_sigterm_to_one_and_resume(tmp_path):
    # Two torchrun groups of 1 (c10d rendezvous, as two nodes of configs/slurm/train.sbatch);
    # SIGTERM to group 1's process group only. Group 0's ranks learn of it through the per-step
    # agreement, so both stop at one step with one complete checkpoint holding both ranks' shards,
    # and a resume of both groups continues from that step.
    _run(["benchmarks/scaling_bench.py", "--device", "cpu", "--smoke", "--parts", "sigterm", "--signal-group", "1",
          "--signal-at", "1", "--linger", "2", "--out", str(tmp_path)])
    t = json.loads((tmp_path / "scaling.json").read_text())["two_node"]
    stop, ckpt_facts = t["sigterm"], t["sigterm"]["checkpoint"]
    assert stop["every_rank_stopped_at_the_checkpoint"], stop
    at = stop["checkpoint_step"]
    assert at >= 1 and ckpt_facts["step"] == at and ckpt_facts["world_size"] == 2
    assert ckpt_facts["zero_shard_ranks"] == [0, 1] and ckpt_facts["incomplete_later_folders"] == []
    assert stop["seconds_to_complete_checkpoint"] is not None
    assert all(g["seconds_to_ranks_exit"] is not None and not g["worker_killed_by_signal"] for g in stop["groups"])
    assert sum(g["holds_rank0"] for g in stop["groups"]) == 1
    resumed = t["resume_after_sigterm"]
    assert [g["exit"] for g in resumed["groups"]] == [0, 0]
    assert resumed["first_step_after_resume"] == at + 1 and resumed["checkpoint"]["step"] == at + 2
    assert sorted(int(s) for s in t["loss_curve"]) == list(range(1, at + 3))  # one row per step, none lost


def test_sr_loader_bench_cpu_smoke_copies_windows_not_cases(tmp_path):
    out = tmp_path / "sr_loader.json"
    _run(["benchmarks/sr_loader_bench.py", "--smoke", "--device", "cpu", "--steps", "2", "--warmup", "1",
          "--cases", "2", "--work", str(tmp_path / "work"), "--out", str(out)])
    rows = {r["mode"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["windows"]["batch_shapes"]["image"] == [2, 4, 20, 20, 20]  # 16^3 patch + halo, not the 32^3 case
    assert rows["whole"]["batch_shapes"]["image"] == [2, 4, 32, 32, 32]
    assert rows["windows"]["mib_to_device_per_step"] < rows["whole"]["mib_to_device_per_step"]
    assert all(0 <= r["data_wait_share"] <= 1 and r["steps_per_s"] > 0 for r in rows.values())


def test_loop_rate_leaves_out_warm_up_and_the_windows_of_the_profiled_steps(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import loop_bench

    rates = {50: 1.0, 100: 2.0, 150: 9.0, 200: 1.5, 250: 10.0, 300: 10.5, 350: 11.0}  # 150, 200: profiled
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "steps_per_s": r}) + "\n"
                                                    for s, r in rates.items()))
    r = loop_bench.loop_rate(tmp_path, 2, exclude=(145, 154))  # steps 145-154 straddle two windows
    assert r["steps_per_s"] == 10.5 and r["windows"] == 3 and r["windows_dropped"] == 4
    assert loop_bench.loop_rate(tmp_path, 2)["windows"] == 5  # without the exclusion: 9, 1.5, 10, 10.5, 11


def test_quality_runs_spread_over_the_cards_the_process_sees(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality_common

    names = ["a_seed0", "a_seed1", "b_seed0", "feature_net"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert quality_common.gpu_envs(names, 1) == {}  # one card: the children inherit it
    envs = quality_common.gpu_envs(names, 2)
    assert [envs[n]["CUDA_VISIBLE_DEVICES"] for n in names] == ["0", "1", "0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the job's own cards, not 0 and 1
    assert {e["CUDA_VISIBLE_DEVICES"] for e in quality_common.gpu_envs(names, 2).values()} == {"4", "6"}
    with pytest.raises(ValueError, match="3 GPUs asked for"):
        quality_common.gpu_envs(names, 3)
    # side_by_side hands each child its own variables
    out = quality_common.side_by_side(
        {n: [sys.executable, "-c", "import os, sys; sys.exit(int(os.environ['CUDA_VISIBLE_DEVICES']))"] for n in names[:2]},
        tmp_path, envs=quality_common.gpu_envs(names[:2], 2))
    assert out == {"a_seed0": 4, "a_seed1": 6}


def test_the_anatomy_sr_stage_chains_behind_the_shipped_base(monkeypatch, tmp_path):
    """quality_cascade's SR config sits on anatomy-2mm's geometry (twice its grid, half its voxel, its fold) and its
    intensity scale."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import argparse

    import quality_cascade

    from medidiff.config import load_config
    from medidiff.data.config import intensity_scale
    from medidiff.pretrained import pretrained_folder

    geo = quality_cascade.base_geometry(pretrained_folder("anatomy-2mm"))
    assert geo["grid"] == [80, 96, 80] and geo["fold"] == 0
    args = argparse.Namespace(smoke=False, device="cuda", minutes=7.0)
    for variant in quality_cascade.VARIANTS:
        cfg = load_config(quality_cascade.SR_CONFIG, quality_cascade.sr_overrides(args, tmp_path, geo, variant))
        assert cfg.stage == "sr" and list(cfg.data.roi) == [160, 192, 160] and cfg.cascade.scale == 2
        assert [2 * s for s in cfg.data.spacing] == pytest.approx(geo["mm"]) and cfg.data.fold == 0
        assert intensity_scale(cfg.data) == geo["intensity"]  # the base's: the cascade refuses another
    assert geo["intensity"]["percentile_region"] == "outside_tumour"  # the shipped base's since session 58
    # the data it writes has that voxel natively: the BraTS field of view over 240 x 240 x 156
    from medidiff.data.prepare import synthetic_spacing

    assert [2 * s for s in synthetic_spacing("anatomy", quality_cascade.FULL_SR["shape"])] == pytest.approx(geo["mm"])


@pytest.mark.slow
def test_quality_cascade_smoke_trains_sr_and_scores_it_beside_the_base_alone(tmp_path):
    _run(["benchmarks/quality_cascade.py", "--out", str(tmp_path), "--smoke", "--device", "cpu", "--workers", "1"])
    r = json.loads((tmp_path / "quality_cascade.json").read_text())
    assert not any(r["exits"].values()) and set(r["realism"]) == {"base_only", "sr_shipped", "sr_velocity_stats"}
    assert all(g["shape"] == r["sr_roi"] for g in r["generated"].values() if g is not r["generated"]["base_only"])
    assert r["generated"]["base_only"]["shape"] == r["geometry"]["grid"]  # the base alone stays on its grid
    assert (tmp_path / "sr_shipped_vs_real.png").is_file() and "sr_velocity_stats" in (tmp_path / "report.md").read_text()


def test_background_scores_fail_a_grey_box_and_speckle_and_pass_a_clean_background(monkeypatch):
    """The quality tables' background numbers: a grey background around the brain was called all head by
    the old fixed-threshold mask, and scored 0; it must score its grey level."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality_common

    rng = np.random.default_rng(0)
    x, y, z = np.mgrid[:48, :48, :40]
    brain = (x - 24) ** 2 / 400 + (y - 24) ** 2 / 400 + (z - 20) ** 2 / 256 < 1
    clean = np.zeros((4, 48, 48, 40), np.float32)
    clean[:, brain] = 0.5 + 0.2 * rng.random((4, int(brain.sum())))
    c = quality_common.background_scores(clean)
    assert c["background_rms"] == 0.0 and c["speckle"] == 0.0 and 0.3 < c["head_fraction"] < 0.6
    grey = clean.copy()
    grey[:, ~brain] = 0.3
    g = quality_common.background_scores(grey)
    assert g["background_rms"] == pytest.approx(0.3, abs=0.01) and g["speckle"] == 1.0  # the grey box
    speckled = clean.copy()
    speckled[(rng.random(clean.shape) < 0.05) & ~brain[None]] = 0.8
    assert quality_common.background_scores(speckled)["speckle"] > 0.03
    # nothing to tell head from background: scored as the worst case, never as a clean 0
    assert quality_common.background_scores(np.full_like(clean, 0.5))["background_rms"] >= 0.5


@pytest.mark.slow
def test_sampler_ablation_scores_each_sampler_of_the_shipped_model(tmp_path):
    from medidiff.cli.main import main as medidiff_main

    data = tmp_path / "data"
    assert medidiff_main(["data", "anatomy", str(data), "--cases", "8", "--shape", "120", "120", "78", "--seed", "0",
                          "--no-progress"]) == 0
    assert medidiff_main(["manifest", "build", "brats", str(data), "-o", str(tmp_path / "manifest.json"),
                          "--folds", "4", "--seed", "0"]) == 0
    out = tmp_path / "abl"
    _run(["benchmarks/sampler_ablation.py", "--out", str(out), "--data", str(data), "--manifest",
          str(tmp_path / "manifest.json"), "--variants", "euler10", "heun5", "--num", "2", "--real", "2"])
    record = json.loads((out / "sampler_ablation.json").read_text())
    assert set(record["variants"]) == {"euler10", "heun5"}
    assert record["variants"]["heun5"]["evaluations"] == 9 and record["variants"]["euler10"]["evaluations"] == 10
    for v in record["variants"].values():
        assert v["seconds_per_case"] > 0 and 0 <= v["eval_background_rms"] < 1
        assert all(f"spectrum_max_abs_log10_{m}" in v for m in ("t1n", "t1c", "t2w", "t2f"))
    assert "| network evaluations a case | 10 | 9 |" in (out / "report.md").read_text()
    assert (out / "figures" / "euler10.png").stat().st_size > 0 and (out / "figures" / "heun5.png").is_file()


def test_every_quality_scale_variant_is_a_config_whose_loss_weights_fit_the_anatomy_model(monkeypatch, tmp_path):
    # a variant that fails here would fail on the GPU host only after its data were written (minutes of a lease)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality_scale

    import torch

    from medidiff.objectives import build_objective
    from medidiff.training.diffusion import build_codec_for, input_tumour_blocks

    p = dict(quality_scale.FULL, workers=1)
    for variant, keys in quality_scale.VARIANTS.items():
        if variant in quality_scale.VAE_STAGES:  # its codec is trained in the job: test_quality_scale_trains_a_vae_arm...
            continue
        cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                                 *keys])
        names = build_codec_for(cfg).channel_names
        weights = build_objective(cfg.objective, names).config.channel_weights
        # 8 sub-bands x 7 image channels (4 modalities, 3 generated tumour masks; 8 with the generated brain mask;
        # 4 for a mask-conditioned model, whose masks come in); pixel space (latent.levels 0): the channels themselves
        channels = 4 + 3 * cfg.conditioning.generate_labels + cfg.conditioning.generate_brain
        assert cfg.conditioning.generate_labels != cfg.conditioning.mask, variant
        assert len(names) == (channels if cfg.latent.levels == 0 else 8 * channels), variant
        assert weights is None or len(weights) == len(names), variant
        if cfg.conditioning.generate_brain:  # the brain mask's own coarse band at 1, after the tumour masks' (100+)
            assert weights[names.index("LLL:ET")] >= 100 and weights[names.index("LLL:brain")] == 1, variant
            assert weights[names.index("LLL:WT")] == weights[names.index("LLL:ET")], variant
    assert load_config(None, quality_scale.VARIANTS["x0_detail300_labels_lll300_bg10"]).objective.background_weight == 10
    # the grain arms change the images' skip alone: every other key is the shipped model's variant's
    shipped = quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005_scaleout"]
    # the high-noise training arms change the training times' logit-normal alone
    for arm, field, value in (("tmean05", "logit_mean", 0.5), ("tstd15", "logit_std", 1.5)):
        keys = quality_scale.VARIANTS[f"x0_detail100_labels_lll100_skip005_scaleout_{arm}"]
        assert keys[:-1] == shipped and keys[-1] == f"objective.{field}={value}"
        cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                                 *keys])
        assert getattr(cfg.objective, field) == value
    for arm, sigma in (("img0035", 0.035), ("img004", 0.04)):
        keys = quality_scale.VARIANTS[f"x0_detail100_labels_lll100_skip005_{arm}_scaleout"]
        assert [k for k in keys if not k.startswith("objective.x0_skip_sigmas=")] == shipped
        cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                                 *keys])
        assert cfg.objective.x0_skip_sigmas == {m: sigma for m in ("t1n", "t1c", "t2w", "t2f")}
    # the shift arms add the halved shift factor alone to their base: on the recipe's latent (80x96x80 through one
    # Haar level: 40x48x40) 1.53 -> 0.77, the odds t / (1 - t) halved, so each time's signal-to-noise ratio is 4x the
    # base's: for the half-amplitude images, the brain scale's again
    from medidiff.objectives.schedules import resolution_shift
    for base in ("x0_detail100_labels_lll100_skip005_scaleout", "x0_detail100_labels_lll100_skip005_img004_scaleout"):
        keys = quality_scale.VARIANTS[base.replace("_scaleout", "_scaleout_shift")]
        assert keys == [*quality_scale.VARIANTS[base], "objective.shift_base_voxels=131072"]
        cfgs = [load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False),
                                   *quality_scale.ARMS[quality_scale.ARM], *k])
                for k in (keys, quality_scale.VARIANTS[base])]
        voxels = math.prod(n // 2 ** cfgs[0].latent.levels for n in cfgs[0].data.roi)
        shifted, shipped_shift = (resolution_shift(voxels, c.objective.shift_base_voxels, c.objective.shift_power)
                                  for c in cfgs)
        assert cfgs[0].objective.time_shift and cfgs[0].objective.shift_base_voxels == 131072
        assert shifted == pytest.approx(shipped_shift / 2) and shifted == pytest.approx(0.766, abs=1e-3), voxels
    # the tumour map read off the noisy input finds the generated WT mask's coarse band in the recipe's latent

    cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                             *quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005_tumour5_input"]])
    assert cfg.objective.tumour_map == "input" and cfg.objective.spatial_weight_max_sigma == 1.0
    codec = build_codec_for(cfg)
    assert callable(input_tumour_blocks(codec, codec.channel_names, torch.zeros(1)))
    # the images' own coarse band at 30 on the shipped recipe (skip 0.05): every image LLL, nothing else
    img = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                             *quality_scale.VARIANTS["x0_detail100_lll30_labels_lll100_skip005"]]).objective
    assert img.channel_weights[:7] == [30, 30, 30, 30, 100, 100, 100] and set(img.channel_weights[7:]) == {1}
    assert img.x0_skip_sigma == 0.05 and img.detail_weight == 100
    # ... and on the mask-conditioned second stage (32 channels: no masks drawn)
    second = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False),
                                               *quality_scale.ARMS[quality_scale.ARM],
                                               *quality_scale.VARIANTS["x0_detail100_lll30_skip005_maskcond"]])
    folded = build_objective(second.objective, build_codec_for(second).channel_names).config.channel_weights
    assert folded[:4] == [30] * 4 and set(folded[4:]) == {100} and len(folded) == 32
    # the step-capped second stage is the same recipe stopped earlier, nothing else
    capped = quality_scale.VARIANTS["x0_detail100_skip005_maskcond_4900"]
    assert capped == [*quality_scale.VARIANTS["x0_detail100_skip005_maskcond"], "train.max_steps=4900"]
    # the recipe with its rate decayed to 0 at the shipped length: nothing else changed, and the schedule ends there
    cosine = quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005_cosine"]
    assert cosine == [*quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005"], "train.lr_schedule=cosine",
                      "train.max_steps=4901"]
    from medidiff.training.engine import lr_lambda
    train = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                               *cosine]).train
    factor = lr_lambda(train)
    assert factor(train.warmup_steps) == 1.0 and factor(2550) < 0.6 and factor(4900) < 1e-6
    capped = quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005_4900"]  # ... and the joint model's
    assert capped == [*quality_scale.VARIANTS["x0_detail100_labels_lll100_skip005"], "train.max_steps=4900"]
    assert load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                              *capped]).train.max_steps == 4900  # after quality_common's uncapped default
    # the halved range's time shift: half the shipped factor on the 2 mm latent, so each time's signal-to-noise
    # ratio for the brain (at half the amplitude) is the shipped scale's
    def objective(variant: str):
        cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                                 *quality_scale.VARIANTS[variant]])
        return build_objective(cfg.objective, build_codec_for(cfg).channel_names)

    def shift(variant: str) -> float:
        return objective(variant).shift((40, 48, 40))

    for matched in ("x0_detail100_lll30_labels_lll100_skip005_scaleout_shift",
                    "x0_detail100_lll30_labels_lll100_skip0025_scaleout_shift"):
        assert shift(matched) == pytest.approx(shift("x0_detail100_lll30_labels_lll100_skip005_scaleout") / 2)
    # EDM's skip is set by the data's std: halved with the range
    assert objective("x0_detail100_lll30_labels_lll100_skip0025_scaleout_shift").config.x0_skip_sigma == 0.025
    # ... or per channel: the images' (half the amplitude) halved, the masks' kept at 0.05
    per = objective("x0_detail100_lll30_labels_lll100_skipch_scaleout")
    names = build_codec_for(load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False),
                                               *quality_scale.ARMS[quality_scale.ARM]])).channel_names
    assert {(n.split(":")[1], s) for n, s in zip(names, per.skip_sigmas)} == {
        *((m, 0.025) for m in ("t1n", "t1c", "t2w", "t2f")), *((m, 0.05) for m in ("WT", "TC", "ET"))}
    assert per.shift((40, 48, 40)) == pytest.approx(shift("x0_detail100_lll30_labels_lll100_skip005_scaleout"))
    nearer = objective("x0_detail100_lll30_labels_lll100_skipch035_scaleout").skip_sigmas
    assert [s for s, n in zip(nearer, names) if n.split(":")[1] in ("WT", "TC", "ET")] == [0.035] * 24
    assert [s for s, n in zip(nearer, names) if n.split(":")[1] == "t1c"] == [0.025] * 8
    # the 4 mm arm that held took the whole brain's percentiles: its 2 mm variant differs from the
    # outside-the-tumour one there alone
    from medidiff.config import to_dict

    def recipe(variant: str, *extra: str):
        return load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False),
                                  *quality_scale.ARMS[quality_scale.ARM], *quality_scale.VARIANTS[variant], *extra])

    brain = recipe("x0_detail100_lll30_labels_lll100_skipch035_top0")
    assert (brain.data.percentile_region, brain.data.percentile_top) == ("brain", 0.0)
    assert to_dict(recipe("x0_detail100_lll30_labels_lll100_skipch035_top0", "data.percentile_region=outside_tumour")) \
        == to_dict(recipe("x0_detail100_lll30_labels_lll100_skipch035_scaleout"))
    zero = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False), *quality_scale.ARMS[quality_scale.ARM],
                              *quality_scale.VARIANTS["x0_detail100_labels_lll100_zerobg"]])
    assert build_codec_for(zero).config.mean[0] < 0  # the coarse band shifted: the background encodes to 0


def test_the_small_two_stage_pair_fits_the_weight_budget(monkeypatch, tmp_path):
    """quality_scale.SMALL_PAIR: the first stage draws labels, the second is mask-conditioned, and their nets as
    the training builds them, packed for shipping (pack_pretrained.py: bf16, 2 bytes a weight; `export` itself
    writes float32), fit issue 16's 25 MB beside every other tracked .safetensors except the shipped model they
    would replace."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import keep_feature_net
    import quality_scale

    from medidiff.nets import build_net
    from medidiff.training.diffusion import build_codec_for, resolve_net_config

    p = dict(quality_scale.FULL, workers=1)
    total = 0
    kinds = []
    for variant in quality_scale.SMALL_PAIR:
        cfg = load_config(None, [*quality_scale.overrides(p, tmp_path, "cpu", False),
                                 *quality_scale.ARMS[quality_scale.ARM], *quality_scale.VARIANTS[variant]])
        net = build_net(resolve_net_config(cfg, build_codec_for(cfg)))
        total += 2 * sum(w.numel() for w in net.parameters())
        kinds.append((cfg.conditioning.generate_labels, cfg.conditioning.mask))
    assert kinds == [(True, False), (False, True)]
    shipped = REPO / "medidiff" / "pretrained" / "anatomy_2mm" / "model.safetensors"
    assert keep_feature_net.tracked_weight_bytes(exclude=shipped) + total <= keep_feature_net.BUDGET_BYTES
    assert total < shipped.stat().st_size  # both stages together below the one model they replace


def test_the_kept_feature_net_is_tracked_within_the_weight_budget_made_for_the_shipped_scale_and_loads():
    """Every Frechet reading compares only with readings of the same net: the kept net's recipe is the grid and
    intensity scale quality_scale evaluates on; its weights are tracked (two kept off the repository were lost
    with the development machine), are the file its README names, load for that scale in float32, and leave every
    tracked .safetensors within the 25 MB the shipped model shares with them."""
    import hashlib

    import torch

    from medidiff.data.config import DataConfig, intensity_scale
    from medidiff.eval.features import load_segmenter_features

    net = REPO / "benchmarks" / "nets" / "anatomy1536_fold0" / "feature_net"
    meta = json.loads((net / "config.json").read_text())
    recipe = meta["recipe"]
    assert recipe["intensity_scale"] == intensity_scale(DataConfig()) and recipe["grid"] == [80, 96, 80]
    digest = hashlib.sha256((net / "model.safetensors").read_bytes()).hexdigest()
    assert digest in (net.parent / "README.md").read_text()
    model, _ = load_segmenter_features(net, modalities=["t1n", "t1c", "t2w", "t2f"], grid=[80, 96, 80],
                                       spacing=recipe["spacing_mm"], intensity=intensity_scale(DataConfig()))
    assert meta["weights_dtype"] == "float16" and {p.dtype for p in model.parameters()} == {torch.float32}
    # where the repository keeps weights (the shipped models, the kept nets); in CI's clean checkout every one is tracked
    weights = [*(REPO / "medidiff").rglob("*.safetensors"), *(REPO / "benchmarks" / "nets").rglob("*.safetensors")]
    assert net / "model.safetensors" in weights and sum(w.stat().st_size for w in weights) <= 25_000_000
    # evaluate with the shipped recipe (on the outside-the-tumour scale since 2026-12-07) reads on the brain scale,
    # so the kept net serves it; read on the config's own scale it is refused (its features would not compare)
    from medidiff.errors import DataError
    from medidiff.eval.data import eval_data_config
    from medidiff.eval.features import segmenter_features_for

    shipped = load_config(REPO / "configs" / "anatomy_2mm.yaml")
    assert shipped.data.percentile_region == "outside_tumour" and shipped.eval.intensity_scale == "brain"
    segmenter_features_for(net, eval_data_config(shipped.data, shipped.eval.intensity_scale))
    with pytest.raises(DataError, match="intensity_scale"):
        segmenter_features_for(net, eval_data_config(shipped.data, "config"))


def test_keep_feature_net_rounds_to_float16_and_refuses_a_net_over_the_budget(tmp_path, monkeypatch):
    """The kept copy is the trained net rounded to float16 (loads back to the same parameters within float16's
    rounding), and a net that would take the tracked weights over the budget is refused with nothing written."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import keep_feature_net as kfn
    import torch
    from safetensors.torch import load_file

    from medidiff.eval.features import save_segmenter_features
    from medidiff.eval.segmentation import build_segmenter

    model = build_segmenter(4, 2, 3)
    src = save_segmenter_features(model, tmp_path / "src", {"modalities": ["t1n", "t1c", "t2w", "t2f"], "init_filters": 2})
    monkeypatch.setattr(kfn, "tracked_weight_bytes", lambda exclude=None: 0)
    kfn.keep(src, tmp_path / "kept")
    kept = load_file(str(tmp_path / "kept" / "model.safetensors"))
    for name, value in model.state_dict().items():
        assert kept[name].dtype == (torch.float16 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(kept[name].to(value.dtype), value, rtol=1e-3, atol=1e-4)
    monkeypatch.setattr(kfn, "tracked_weight_bytes", lambda exclude=None: kfn.BUDGET_BYTES - 10)
    with pytest.raises(SystemExit, match="over the 25 MB budget"):
        kfn.keep(src, tmp_path / "over")
    assert not (tmp_path / "over" / "model.safetensors").exists() and not (tmp_path / "over" / "config.json").exists()
    # a refused replacement leaves the kept net as it was, and no temporary file beside it
    before = {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()}
    with pytest.raises(SystemExit, match="over the 25 MB budget"):
        kfn.keep(src, tmp_path / "kept")
    assert {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()} == before
    # what is counted: the repository's weights that git tracks or would add, the one being replaced left out
    monkeypatch.undo()
    kept = REPO / "benchmarks" / "nets" / "anatomy1536_fold0" / "feature_net" / "model.safetensors"
    if (REPO / ".git").exists():  # (a checkout without git history cannot ask git)
        assert kfn.tracked_weight_bytes() - kfn.tracked_weight_bytes(exclude=kept) == kept.stat().st_size
        assert kfn.tracked_weight_bytes() <= kfn.BUDGET_BYTES


def test_paired_contrast_reads_an_overshoot_in_one_modality_as_its_own_difference(monkeypatch):
    """Generated cases that are the real ones with the ET 0.3 brighter in the third modality only: the paired
    difference of the ET contrast is +0.3 there (every case, so a zero-width interval) and 0 elsewhere; a case
    without ET is left out of the ET readings and counted in the brightest-voxels one. The unpaired medians
    alone could not say which case moved."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import paired_contrast

    rng = np.random.default_rng(0)
    n, shape = 4, (24, 24, 24)
    real = np.full((n, 4, *shape), -1.0, dtype=np.float32)
    labels = np.zeros((n, 3, *shape), dtype=bool)
    for i in range(n):
        real[i][:, 3:21, 3:21, 3:21] = rng.uniform(-0.3, 0.1, (4, 18, 18, 18))  # a brain with texture
        lo = 8 + i
        labels[i, 0, lo:lo + 6, 8:14, 8:14] = True  # WT
        if i < n - 1:  # the last case has no ET
            labels[i, 1:, lo + 2:lo + 4, 10:12, 10:12] = True
        real[i][:, labels[i, 0]] = 0.3
        real[i][:, labels[i, 2]] = 0.6 + 0.1 * i
    generated = real.copy()
    for i in range(n):
        generated[i, 2][labels[i, 2]] += 0.3
    r = paired_contrast.paired_contrast(generated, labels, real, labels, ["t1n", "t1c", "t2w", "t2f"])
    et = r["et_contrast"]
    assert et["t2w"]["n"] == n - 1
    np.testing.assert_allclose(et["t2w"]["difference"]["mean"], 0.3, atol=1e-6)
    np.testing.assert_allclose(et["t2w"]["difference"]["t95"], [0.3, 0.3], atol=1e-6)
    for mod in ("t1n", "t1c", "t2f"):
        assert abs(et[mod]["difference"]["mean"]) < 1e-6 and et[mod]["difference_median"] == 0
    assert r["top_in_tumour"]["t1n"]["n"] == n and r["label_agreement"]["wt_dice_min"] == 1.0
    unchanged = paired_contrast.paired_contrast(real, labels, real, labels, ["t1n", "t1c", "t2w", "t2f"])
    assert all(v["difference"]["mean"] == 0 for k in paired_contrast.READINGS for v in unchanged[k].values()
               if v["n"])  # the fixture has no core outside the ET: ncr_contrast reads n 0
    ed = r["ed_contrast"]  # the edema unchanged in every modality, read in every case
    assert all(ed[m]["n"] == n and ed[m]["difference"]["mean"] == 0 for m in ("t1n", "t1c", "t2w", "t2f"))
    assert r["ncr_contrast"]["t1n"]["n"] == 0
    cored = labels.copy()  # a core (TC without ET) in every case: read, and darker or brighter as drawn
    cored[:, 1, 8:20, 8:14, 8:14] = cored[:, 0, 8:20, 8:14, 8:14]
    core = cored[:, 1] & ~cored[:, 2]
    dark = real.copy()
    dark[:, 0][core] = -0.6
    from medidiff.eval.realism import brain_masks, tumour_contrast

    ncr = tumour_contrast(dark, brain_masks(dark), cored)["ncr_contrast"]
    assert np.isfinite(ncr).all() and (ncr[:, 0] < -0.3).all() and (ncr[:, 1:] > 0).all()
    wet = real.copy()
    for i in range(n):  # the edema 0.2 brighter in t2f only: read there, in every case, and the ET unmoved
        wet[i, 3][labels[i, 0] & ~labels[i, 1]] += 0.2
    w = paired_contrast.paired_contrast(wet, labels, real, labels, ["t1n", "t1c", "t2w", "t2f"])
    np.testing.assert_allclose(w["ed_contrast"]["t2f"]["difference"]["t95"], [0.2, 0.2], atol=1e-6)
    assert w["ed_contrast"]["t2w"]["difference"]["mean"] == 0 and w["et_contrast"]["t2f"]["difference"]["mean"] == 0
    where = paired_contrast.stray_where(real, labels, ["t1n", "t1c", "t2w", "t2f"])
    assert all(v.size == 0 or (v >= 0).all() and (v <= 1).all() for v in where["at_edge"])
    lit = real.copy()
    lit[:, 1, 3, 3:21, 3:21] = 1.0  # the brightest t1c voxels on one face of the brain, far from every tumour
    lit_where = paired_contrast.stray_where(lit, labels, ["t1n", "t1c", "t2w", "t2f"])
    assert (lit_where["at_edge"][1] == 1.0).all() and (lit_where["to_wt"][1] >= 5).all()
    shifted = np.roll(labels, 2, axis=2)  # a side read through another crop: the agreement says so
    assert paired_contrast.paired_contrast(real, shifted, real, labels, ["t1n", "t1c", "t2w", "t2f"])[
        "label_agreement"]["wt_dice_min"] < 0.8


def test_blur_contrast_reads_a_rim_smeared_by_blur_and_nothing_without_blur(monkeypatch):
    """The mechanism blur_contrast.py exists to size: an ET rim beside brighter edema reads brighter once blurred
    (the edema smears in), while a modality whose tumour is flat moves far less (only through the reading's
    per-case scale); sigma 0 moves nothing; the blur raises the detail coherence (the realism check's blur
    reading), blurs inside the brain only (a brain voxel at the background's value included) and leaves the
    outside as it was."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import blur_contrast

    rng = np.random.default_rng(0)
    n, shape = 3, (28, 28, 28)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    images = np.full((n, 2, *shape), -1.0, dtype=np.float32)
    labels = np.zeros((n, 3, *shape), dtype=bool)
    for i in range(n):
        images[i][:, 3:25, 3:25, 3:25] = rng.uniform(-0.3, 0.1, (2, 22, 22, 22))
        r = np.sqrt(((grid - np.array([13 + i, 14, 14])[:, None, None, None]) ** 2).sum(0))
        labels[i, 0], labels[i, 1], labels[i, 2] = r < 6, r < 3, (r >= 2) & (r < 3)
        images[i, 0][r < 6] = 0.9  # first modality: bright edema around an ET (and core) at 0.2
        images[i, 0][r < 3] = 0.2
        images[i, 1][r < 6] = 0.3  # second: the tumour flat
    r = blur_contrast.blur_contrast(images, labels, ["a", "b"], [0.0, 1.0])
    still, blur = r["0.0"], r["1.0"]
    assert all(v == 0 for v in still["coherence_shift"].values())
    assert all(still["paired"]["et_contrast"][m]["difference"]["mean"] == 0 for m in ("a", "b"))
    assert blur["coherence_shift"]["a"] > 0 and blur["coherence_shift"]["b"] > 0
    moved = {m: blur["paired"]["et_contrast"][m]["difference"]["mean"] for m in ("a", "b")}
    # the flat modality moves only by the reading's per-case scale (the blurred texture's narrower percentiles)
    assert moved["a"] > 0.1 and moved["a"] - moved["b"] > 0.1 and abs(moved["b"]) < 0.1, moved
    clipped = images.copy()
    clipped[:, 1, 10, 10, 10] = -1.0  # a brain voxel the scale clipped to the background's value in one channel
    b = blur_contrast.blurred(clipped, 1.0)
    outside = (clipped == -1.0).all(1)
    assert (b[:, :, outside[0]] == -1.0).all() if outside[0].any() else True
    assert np.array_equal(b.transpose(1, 0, 2, 3, 4)[:, outside], clipped.transpose(1, 0, 2, 3, 4)[:, outside])
    assert (b[:, 1, 10, 10, 10] > -1.0).all()  # blurred with the brain around it, not kept as background
    rim = (slice(None), 0, 3, slice(3, 25), slice(3, 25))  # the brain's outer face: the background does not
    assert b[rim].min() >= clipped[:, 0, 3:25, 3:25, 3:25].min() - 1e-6  # darken it below the brain's own range


def test_paired_contrast_passes_the_mask_folds_to_generate(monkeypatch, tmp_path):
    """On a copy of the GPU set's manifest (not the model's own), generate cannot tell the training folds and
    refuses: paired_contrast passes --mask-folds on, and nothing without it."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import argparse

    import paired_contrast

    calls = []
    monkeypatch.setattr(paired_contrast.subprocess, "run", lambda cmd, check: calls.append(cmd))
    base = dict(model="m", manifest=tmp_path / "m.json", num=2, device="cpu", root=None, sampler=None)
    paired_contrast.generate(argparse.Namespace(**base, mask_folds=[1, 2, 3]), tmp_path / "g")
    paired_contrast.generate(argparse.Namespace(**base, mask_folds=None), tmp_path / "g")
    assert calls[0][calls[0].index("--mask-folds") + 1:][:3] == ["1", "2", "3"]
    assert "--mask-folds" not in calls[1]


def test_a_perfect_generator_reads_no_paired_difference(monkeypatch, tmp_path):
    """paired_contrast's known-good input (--control): each real case through the model's own data pipeline, written
    as generate writes a case, read against the raw cases. On the model's own scale (the shipped anatomy_2mm.yaml's:
    outside the tumour since session 58) every reading must be 0 and on the other scale within 0.01 (t1c left out:
    the outside-the-tumour scale clips the brightest enhancing voxels, above twice the normal brain's range, and
    the brain scale reads them); a reading that moved here would be the measurement's, not a model's."""
    from medidiff.cli.main import main as medidiff_main

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import paired_contrast

    data, manifest, out = tmp_path / "data", tmp_path / "manifest.json", tmp_path / "out"
    assert medidiff_main(["data", "anatomy", str(data), "--cases", "8", "--shape", "120", "120", "78", "--seed", "0",
                          "--tumour-fraction", "1", "--no-progress"]) == 0
    assert medidiff_main(["manifest", "build", "brats", str(data), "-o", str(manifest), "--folds", "2", "--seed", "0"]) == 0
    assert paired_contrast.main(["--config", str(REPO / "configs" / "anatomy_2mm.yaml"),
                                 "--manifest", str(manifest), "--root", str(data), "--num", "4", "--mask-folds", "1",
                                 "--control", "--out", str(out)]) == 0
    result = json.loads((out / "paired_contrast.json").read_text())
    assert len(result["cases"]) == 4 and len(set(result["cases"])) == 4
    for scale, readings in result["scales"].items():
        assert readings["label_agreement"]["wt_dice_min"] == pytest.approx(1.0)
        for reading in paired_contrast.READINGS:
            for mod, r in readings[reading].items():
                if r["n"] == 0 or (scale == "brain" and mod == "t1c"):
                    continue
                # own scale: every reading <= 1e-4 but t1c's ET contrast, 3e-4 (2026-12-07), near the clip at +1
                assert abs(r["difference"]["mean"]) <= (5e-4 if scale == "outside_tumour" else 0.01), (scale, reading, mod, r)
    assert sum(r["n"] for r in result["scales"]["outside_tumour"]["et_contrast"].values()) > 0  # not vacuous


def test_generate_write_bench_times_generate_with_one_writer_thread_and_the_default(monkeypatch, tmp_path):
    """Each geometry's two rows are generate through the CLI (one writer thread: the old in-thread writing;
    then the default), a row per --batch and --writers given, and the module's writer-thread setting is restored
    afterwards."""
    import importlib

    import medidiff.utils.threads as threads

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module("generate_write_bench")
    default = threads.WRITER_THREADS
    out = tmp_path / "write.json"
    monkeypatch.setattr(sys, "argv", ["generate_write_bench.py", "--out", str(out), "--num", "1", "--batch", "1"])
    assert bench.main() == 0
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"one 1 mm case written on one thread, seconds",
                         *(f"{g}, --batch 1, writer threads {n}" for g in ("native", "brats") for n in (1, default))}
    assert rows["native, --batch 1, writer threads 1"]["threads_used"] == 1
    assert rows[f"native, --batch 1, writer threads {default}"]["threads_used"] == min(default, threads.usable_cores())
    assert all(r["cases"] == 1 and r["seconds"] > 0 for k, r in rows.items() if "writer" in k)
    assert threads.WRITER_THREADS == default
    # several batch sizes and writer counts in one command (compared within one call), one geometry
    monkeypatch.setattr(sys, "argv", ["generate_write_bench.py", "--out", str(out), "--num", "2", "--batch", "1", "2",
                                      "--writers", "2", "--geometries", "native"])
    assert bench.main() == 0
    record = json.loads(out.read_text())
    assert record["batch"] == [1, 2] and set(record["rows"]) == {
        "one 1 mm case written on one thread, seconds",
        *(f"native, --batch {b}, writer threads 2" for b in (1, 2))}
    assert threads.WRITER_THREADS == default


def test_seed_pick_avoids_a_shifted_run_and_finds_no_gain_among_equal_runs(monkeypatch, tmp_path, capsys):
    """benchmarks/seed_pick.py: of three runs drawn from the real features' distribution, one shifted off it, the
    shifted one is never picked and the pick gains over a blind one on the other half; among equal runs the gain
    judged on the other half is near zero (no winner's curse: the pick's own half would read it low). Its CLI
    reads the files image_evaluations_of keeps and refuses a missing run with exit 2."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import seed_pick

    rng = np.random.default_rng(0)
    train, held = rng.normal(size=(400, 6)), rng.normal(size=(100, 6))
    equal = {f"seed{s}": rng.normal(size=(60, 6)) for s in range(3)}
    shifted = {**equal, "seed2": rng.normal(size=(60, 6)) + 1.0}
    bad = seed_pick.pick_by_halves(shifted, train, held, splits=10)
    assert bad["runs"]["seed2"]["picked"] == 0 and bad["gain_range"][0] > 0
    assert bad["floor_at_half"]["count"] == 30 and bad["runs"]["seed2"]["frechet_B_median"] > 5 * bad["floor_at_half"]["median"]
    same = seed_pick.pick_by_halves(equal, train, held, splits=30)
    assert abs(same["gain_median"]) < 0.5 * bad["gain_median"]
    # the winner's curse the halves avoid: on its own half A the pick reads below the runs' mean A
    curse = np.median([np.mean(list(r["A"].values())) - r["A"][r["picked"]] for r in same["per_split"]])
    assert curse > abs(same["gain_median"])
    # how many cases a pick needs: the shifted run is never picked at 30 cases (half a run); 31 and more re-sample
    # too much of the one draw and are skipped
    rates = seed_pick.pick_rate_by_count(shifted, train, [4, 30, 31, 61], draws=20)
    assert list(rates) == [4, 30] and rates[30]["seed2"] == 0 and sum(rates[30].values()) == pytest.approx(1)
    # runs of unequal counts are read at the smallest: one run of 600 cases of the real distribution beside two of
    # 60 is not picked for its size (Frechet falls as the count rises)
    big = {**equal, "seed0": rng.normal(size=(600, 6))}
    cut = seed_pick.pick_by_halves(big, train, held, splits=10)
    assert cut["count"] == 60 and cut["half"] == 30 and cut["runs"]["seed0"]["cases"] == 60
    assert cut["runs"]["seed0"]["picked"] < 10  # uncut, its halves of 300 read lowest in every split
    # the floor is read at the half count, or at every held-out case where there are fewer, and says so
    assert seed_pick.pick_by_halves(shifted, train, held[:20], splits=2)["floor_at_half"]["note"].startswith("only 20")
    with pytest.raises(ValueError, match=">= 2 runs"):
        seed_pick.pick_by_halves({"one": equal["seed0"]}, train)
    np.savez_compressed(tmp_path / "real_features.npz", train=train.astype(np.float32), heldout=held.astype(np.float32))
    for name, x in shifted.items():
        (tmp_path / name).mkdir()
        np.savez_compressed(tmp_path / name / "features.npz", synthetic=x.astype(np.float32))
    assert seed_pick.main(["--eval", str(tmp_path), "--runs", *shifted, "--splits", "4", "--out", str(tmp_path / "p.json")]) == 0
    assert "| seed2 |" in capsys.readouterr().out and json.loads((tmp_path / "p.json").read_text())["runs"]["seed2"]["picked"] == 0
    assert seed_pick.main(["--eval", str(tmp_path), "--runs", "seed0", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    # a run of another job joins only with the same real side (real cases and feature net)
    other = tmp_path / "other_job"
    (other / "seed5").mkdir(parents=True)
    np.savez_compressed(other / "seed5" / "features.npz", synthetic=equal["seed0"].astype(np.float32))
    np.savez_compressed(other / "real_features.npz", train=train.astype(np.float32), heldout=held.astype(np.float32))
    assert seed_pick.main(["--eval", str(tmp_path), "--runs", "seed2", str(other / "seed5"), "--splits", "2"]) == 0
    assert "| seed5 |" in capsys.readouterr().out
    np.savez_compressed(other / "real_features.npz", train=train.astype(np.float32) + 1, heldout=held.astype(np.float32))
    assert seed_pick.main(["--eval", str(tmp_path), "--runs", "seed2", str(other / "seed5")]) == 2
    assert "another real side" in capsys.readouterr().err
    # two runs of one name (every --model job names its given model alike): refused, not silently merged
    (other / "seed2").mkdir()
    np.savez_compressed(other / "seed2" / "features.npz", synthetic=equal["seed1"].astype(np.float32))
    np.savez_compressed(other / "real_features.npz", train=train.astype(np.float32), heldout=held.astype(np.float32))
    assert seed_pick.main(["--eval", str(tmp_path), "--runs", "seed2", str(other / "seed2")]) == 2
    assert "a second run named seed2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a count below 1: argparse's one line, exit 2
        seed_pick.main(["--eval", str(tmp_path), "--runs", "seed0", "seed1", "--splits", "0"])
    assert stop.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def _arm_records(tmp_path: Path, floor: float = 2.0) -> dict:
    """Two quality_scale records: a baseline of four seeds and an arm of two, 8 left-out Frechet figures each."""
    import arm_compare

    rng = np.random.default_rng(0)
    records = {}
    for folder, arm, seeds, level in (("base_rec", "base", range(4), 10.0), ("arm_rec", "arm", range(2), 5.0)):
        per_run, loo = {}, {}
        for s in seeds:
            name = f"{arm}_seed{s}"
            f = level + s * 0.1
            per_run[name] = {"frechet_3d": f, "frechet_3d_se": 0.5, "frechet_3d_cases": 8, "frechet_3d_floor": floor,
                             "frechet_over_floor": f / floor, "prdc_precision": 0.5, "histogram_w1_floor_t1n": 0.01}
            loo[name] = list(f + rng.normal(0, 0.01, 8))
            records[(arm, s)] = (folder, f"{arm}_seed{{}}")
        (tmp_path / folder / "eval").mkdir(parents=True)
        (tmp_path / folder / "quality_scale.json").write_text(json.dumps({"per_run": per_run, "frechet_leave_one_out": loo}))
        np.savez(tmp_path / folder / "eval" / "real_features.npz", train=np.ones((3, 2)), heldout=np.zeros((2, 2)))
    return arm_compare.load_runs(tmp_path, records)


def test_arm_compare_tests_the_arm_against_its_baseline_over_runs_and_pairs_runs_case_by_case(monkeypatch, tmp_path):
    """benchmarks/arm_compare.py: an arm whose two runs both lie below the baseline's four reads the smallest p that
    15 splits allow, a measure equal in every run reads p = 1; a paired difference of 5 with left-out figures that
    move together resolves; one instrument is required (one floor, one case count, the same real features)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import arm_compare

    runs = _arm_records(tmp_path)
    p, wide, total = arm_compare.permutation(runs, "arm", "base", "frechet_over_floor", log=True)
    assert (p, wide, total) == (pytest.approx(1 / 15), 1, 15)
    assert arm_compare.permutation(runs, "arm", "base", "prdc_precision")[0] == 1.0
    line = arm_compare.paired(runs, ("arm", 0), ("base", 0))
    assert "-5.00" in line and "resolved: arm seed 0 nearer real" in line
    assert "not resolved" in arm_compare.paired(runs, ("base", 1), ("base", 1))
    lines = arm_compare.report(runs, "arm", "base", [("Frechet", "frechet_over_floor", True)], [(("arm", 1), ("base", 2))])
    assert any(s.startswith("| histogram W1 t1n (floor 0.010) |") for s in lines)
    assert any(s.startswith("| precision | 0.500 |") for s in lines)
    assert any(s.startswith("| recall | n/a |") for s in lines)  # a measure no record holds
    assert any("smallest two-sided p of 0.067" in s for s in lines)
    two_each = {n: m for n, m in runs.items() if n[1] < 2}  # 2 against 2: a split and its complement tie
    assert any("p of 0.333" in s for s in arm_compare.report(two_each, "arm", "base", [], []))
    assert arm_compare.permutation(two_each, "arm", "base", "frechet_over_floor", log=True)[0] == pytest.approx(2 / 6)
    features = tmp_path / "arm_rec" / "eval" / "real_features.npz"
    reference = tmp_path / "base_rec" / "eval" / "real_features.npz"
    assert "bitwise" in arm_compare.check_one_instrument(runs, features, reference, cases=8)
    with pytest.raises(ValueError, match="at \\[8\\] cases, not 192"):
        arm_compare.check_one_instrument(runs, features, reference, cases=192)
    np.savez(reference, train=np.ones((3, 2)) * 2, heldout=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="another real side"):
        arm_compare.check_one_instrument(runs, features, reference, cases=8)
    runs[("arm", 0)]["frechet_3d_floor"] = 3.0
    with pytest.raises(ValueError, match="different floors"):
        arm_compare.check_one_instrument(runs, features, reference, cases=8)


def test_arm_compare_refuses_realism_rows_read_against_different_real_sides(monkeypatch, tmp_path):
    """A record's realism rows come from its image phase (every training-fold case) where that finished, else from
    its realism phase (--realism-cases): session 61's first shift-arm table set one beside the other. Records since
    session 61 name the side (realism_source); older ones are read as the image phase's where they hold Frechet
    figures for the run."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # alone, no earlier test has put it there
    import arm_compare

    runs = _arm_records(tmp_path)
    assert {m["realism_source"] for m in runs.values()} == {"image"}  # inferred: every run has left-out figures
    rec = json.loads((tmp_path / "arm_rec" / "quality_scale.json").read_text())
    del rec["frechet_leave_one_out"]["arm_seed1"]  # its image phase cut: the realism phase's rows
    (tmp_path / "arm_rec" / "quality_scale.json").write_text(json.dumps(rec))
    records = {(a, s): (f"{a}_rec", f"{a}_seed{{}}") for a, seeds in (("base", range(4)), ("arm", range(2))) for s in seeds}
    mixed = arm_compare.load_runs(tmp_path, records)
    assert mixed[("arm", 1)]["realism_source"] == "realism" and mixed[("arm", 1)]["leave_one_out"] is None
    with pytest.raises(ValueError, match="different real sides: .*arm seed 1 realism"):
        arm_compare.table(mixed)
    rec["realism_source"] = {"arm_seed0": "realism", "arm_seed1": "realism"}  # named by the record: it wins
    (tmp_path / "arm_rec" / "quality_scale.json").write_text(json.dumps(rec))
    named = arm_compare.load_runs(tmp_path, records)
    assert named[("arm", 0)]["realism_source"] == "realism"
    arm_compare.table({n: m for n, m in named.items() if n[0] == "arm"})  # one side: no refusal


def test_arm_compare_reads_runs_from_their_realism_phase_and_refuses_two_real_sides(monkeypatch, tmp_path):
    """load_realism_phase_runs: a run is read from realism/<run>.json even where its job's image phase finished
    (its per_run rows then read another real side); a run without a realism phase and two realism phases read
    against different real cases are refused."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import arm_compare

    def write(folder: str, run: str, share: float, real_cases: int, band: float, image: bool) -> None:
        root = tmp_path / folder
        (root / "realism").mkdir(parents=True, exist_ok=True)
        (root / "seeds").mkdir(exist_ok=True)
        checks = {"power_spectrum": {"per_modality": {"t1n": {"log10_ratio_per_band": [0.0, band],
                                                             "max_abs_log10_ratio": abs(band), "floor": 0.01}}},
                  "tumour_statistics": {"share_with_tumour": {"synthetic": 0.7, "real": share},
                                        "size_log10_wt_fraction": {"wasserstein": 0.1}}}
        (root / "realism" / f"{run}.json").write_text(json.dumps(
            {"results": {"realism": {"checks": checks, "counts": {"real_train": real_cases}}}}))
        (root / "seeds" / f"{run}.json").write_text(json.dumps(
            {"steps": 10, "loss_last_200": 0.5, "background": {"background_rms": 0.01}}))
        if image:  # a finished image phase with realism rows against every training case: not read here
            other = {"power_spectrum": {"per_modality": {"t1n": {"log10_ratio_per_band": [0.0, 9.0],
                                                                "max_abs_log10_ratio": 9.0, "floor": 0.01}}}}
            (root / "eval" / run).mkdir(parents=True)  # the image phase's folder: eval/<run>
            (root / "eval" / run / "report.json").write_text(json.dumps(
                {"results": {"realism": {"checks": other, "counts": {"real_train": 999}}}}))

    write("a", "x_seed0", 0.8, 192, -0.3, image=True)
    write("b", "y_seed0", 0.8, 192, -0.1, image=False)
    records = {("x", 0): ("a", "x_seed{}"), ("y", 0): ("b", "y_seed{}")}
    runs, bands = arm_compare.load_realism_phase_runs(tmp_path, records)
    assert bands[("x", 0)]["t1n"] == [0.0, -0.3] and runs[("x", 0)]["spectrum_max_abs_log10_t1n"] == 0.3
    assert runs[("y", 0)]["steps"] == 10 and runs[("y", 0)]["background_rms"] == 0.01
    assert {m["realism_source"] for m in runs.values()} == {"realism"}
    arm_compare.table(runs)  # one side: a table
    write("c", "z_seed0", 0.8, 100, 0.0, image=False)  # the same real tumour share over other real cases
    with pytest.raises(ValueError, match="different real sides"):
        arm_compare.load_realism_phase_runs(tmp_path, {**records, ("z", 0): ("c", "z_seed{}")})
    (tmp_path / "a" / "realism" / "x_seed0.json").unlink()  # its image phase alone: not read in its place
    with pytest.raises(ValueError, match="x_seed0 has no realism phase"):
        arm_compare.load_realism_phase_runs(tmp_path, records)
