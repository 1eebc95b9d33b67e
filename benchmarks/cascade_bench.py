"""Seconds per full-resolution case: base model + cascade SR (flow, K steps) vs 1000-step DDPM.

Full setting (``--device cuda``): BraTS 240x240x155 x 4 modalities (+ WT/TC/ET channels), padded
to the grid 240x240x160. The base model samples the 120x120x80 grid (1-level Haar latent
60x60x40 x 56 channels), the SR stage upsamples x2 (latent 120x120x80 x 56, conditioned on 56
more channels). Both nets have RANDOM weights: the numbers are timings only (sampling cost does
not depend on the weights). Per case: base sampling + SR sampling + decoding + label extraction,
through the public pipelines (``CascadePipeline``), batch 1.

Rows:
  cascade_flow_K      flow matching, Euler, K steps in each stage (measured end to end), for at least
                      three distinct K (``--steps``)
  cascade_flow_fit    least squares time = fixed + K x per-step over those K, with every residual
  cascade_ddpm_1000   the same nets as a DDPM cascade with the 1000-step ancestral sampler;
                      timed at n, 2n and 3n steps per stage (n = ``--ddpm-measure-steps``); the same
                      fit separates the fixed cost from the per-step cost (recorded with its
                      residuals) and is extrapolated to 1000 steps (each DDPM step is one net call,
                      like an Euler step); ``ddpm_vs_euler_per_step`` divides the two fitted per-step
                      costs (issue 15: <= 1.2); ``--ddpm-full`` times all 1000
  sampler_overhead    the samplers alone: DDPM and Euler steps on the SR stage's full latent with a
                      trivial net (x / 2), fitted over ``--steps``: the non-network cost of a step

A fit is refused on fewer than three distinct step counts: two points always lie on a line, so
their fixed cost can come out negative (as the recorded H100 pair did) with nothing to show it.

Examples::

    python benchmarks/cascade_bench.py --device cuda                   # H100/H200, bf16 autocast
    python benchmarks/cascade_bench.py --device cuda --steps 10 20 30 --sr-mode whole patches --compile
    python benchmarks/cascade_bench.py --device cpu --tiny             # CPU smoke (seconds)

Writes ``benchmarks/results/cascade_<device>_<date>.json`` (or ``--out``) with device, date,
command, shapes, steps and seconds per case.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medidiff.cascade.config import CascadeConfig
from medidiff.cascade.pipeline import CascadePipeline, SRPipeline
from medidiff.cascade.sr_task import resolve_sr_net_config
from medidiff.conditioning.config import ConditioningConfig
from medidiff.data.config import DataConfig
from medidiff.experiment import ExperimentConfig
from medidiff.generation import DiffusionPipeline
from medidiff.nets import build_net, count_parameters
from medidiff.nets.config import NetConfig
from medidiff.objectives.config import ObjectiveConfig
from medidiff.samplers.config import SamplerConfig
from medidiff.training.diffusion import build_codec_for, resolve_net_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import write_record  # noqa: E402  (one results-file naming for the benchmarks)

FULL = dict(roi=(240, 240, 160), base_channels=(64, 128, 256), base_blocks=(1, 2, 2),
            sr_channels=(64, 128, 256), sr_blocks=(1, 2, 2), patch=(96, 96, 96), groups=32)
TINY = dict(roi=(32, 32, 32), base_channels=(16, 32), base_blocks=(1, 1),
            sr_channels=(16, 32), sr_blocks=(1, 1), patch=(16, 16, 16), groups=8)


def _experiment(setting: dict[str, Any], *, stage: str, objective: str, sr_mode: str) -> ExperimentConfig:
    channels = setting["sr_channels" if stage == "sr" else "base_channels"]
    blocks = setting["sr_blocks" if stage == "sr" else "base_blocks"]
    return ExperimentConfig(
        name=f"bench_{stage}", stage=stage,  # type: ignore[arg-type]
        data=DataConfig(roi=setting["roi"], downsample=1 if stage == "sr" else 2, label_mode="regions"),
        conditioning=ConditioningConfig(generate_labels=True),
        net=NetConfig(channels=channels, num_res_blocks=blocks, norm_groups=setting["groups"]),
        objective=ObjectiveConfig(type=objective),  # type: ignore[arg-type]
        sampler=SamplerConfig(name="euler" if objective == "flow" else "ddpm"),
        cascade=CascadeConfig(scale=2, patch_size=setting["patch"], sample_mode=sr_mode),  # type: ignore[arg-type]
    )


def build_cascade(setting: dict[str, Any], *, objective: str, sr_mode: str, device: str, compile: bool) -> CascadePipeline:
    """Random-weight base + SR pipelines for ``setting`` (timing only)."""
    base_cfg = _experiment(setting, stage="diffusion", objective=objective, sr_mode=sr_mode)
    codec = build_codec_for(base_cfg)
    net_cfg = resolve_net_config(base_cfg, codec)
    base = DiffusionPipeline(base_cfg, net_cfg, build_net(net_cfg).to(device), codec.to(device))
    sr_cfg = _experiment(setting, stage="sr", objective=objective, sr_mode=sr_mode)
    sr_codec = build_codec_for(sr_cfg)
    sr_net_cfg = resolve_sr_net_config(sr_cfg, sr_codec)
    sr = SRPipeline(sr_cfg, sr_net_cfg, build_net(sr_net_cfg).to(device), sr_codec.to(device))
    if compile:
        base.net.compile_blocks()
        sr.net.compile_blocks()
    return CascadePipeline(base, sr)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_cases(pipe: CascadePipeline, steps: int, *, cases: int, device: str, autocast: Any) -> float:
    """Seconds per case (batch 1) after one warm-up case, each stage sampling ``steps`` steps."""
    base_s = dataclasses.replace(pipe.base.cfg.sampler, num_steps=steps)
    sr_s = dataclasses.replace(pipe.sr.cfg.sampler, num_steps=steps)
    with autocast:
        pipe([10_000], sampler=base_s, sr_sampler=sr_s)  # warm-up (cuDNN autotune, compilation)
        _sync(device)
        start = time.perf_counter()
        for i in range(cases):
            pipe([i], sampler=base_s, sr_sampler=sr_s)
        _sync(device)
    return (time.perf_counter() - start) / cases


def profile_case(pipe: CascadePipeline, steps: int, *, device: str, autocast: Any) -> dict[str, Any]:
    """One case under torch.profiler (after ``time_cases`` warmed it up): wall time, the pipeline's
    ranges (base_sample, base_decode, base_to_sr, sr_condition, sr_sample, sr_decode, labels), GPU
    busy time, launches, syncs and the top kernels: where the fixed cost of a case goes."""
    from loop_bench import split_profile  # one profile summary for the loop and for sampling
    from torch.profiler import ProfilerActivity, profile

    base_s = dataclasses.replace(pipe.base.cfg.sampler, num_steps=steps)
    sr_s = dataclasses.replace(pipe.sr.cfg.sampler, num_steps=steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with autocast, profile(activities=activities) as prof:
        start = time.perf_counter()
        pipe([20_000], sampler=base_s, sr_sampler=sr_s)
        _sync(device)
        wall = time.perf_counter() - start
    # split_profile's "per step" fields are per case here (one case profiled)
    return {**split_profile(prof, wall, 1), "per": "case", "cases": 1, "sampler_steps_per_stage": steps}


def fit_fixed_plus_steps(steps: list[int], seconds: list[float]) -> dict[str, Any]:
    """Least-squares ``seconds = fixed + steps x per_step`` over >= 3 distinct step counts, with every
    residual: a negative fixed cost or a large residual says the timings are not linear in steps
    (warm-up, clocks), and the extrapolation should not be trusted. Two points always fit exactly
    (no residual to judge by), so fewer than three are refused."""
    if len(steps) != len(seconds):
        raise ValueError(f"{len(steps)} step counts but {len(seconds)} timings")
    if len(set(steps)) < 3:
        raise ValueError(f"fit the step cost on at least three distinct step counts, got {sorted(set(steps))}")
    a = np.stack([np.ones(len(steps)), np.asarray(steps, dtype=np.float64)], axis=1)
    (fixed, per_step), *_ = np.linalg.lstsq(a, np.asarray(seconds, dtype=np.float64), rcond=None)
    resid = np.asarray(seconds) - a @ np.array([fixed, per_step])
    return {"fixed_s": round(float(fixed), 5), "per_step_s": round(float(per_step), 6),
            "steps": [int(k) for k in steps], "seconds": [round(float(t), 5) for t in seconds],
            "residuals_s": [round(float(r), 5) for r in resid],
            "max_abs_residual_s": round(float(np.abs(resid).max()), 5), "fixed_negative": bool(fixed < 0)}


class _HalfNet(torch.nn.Module):
    """A trivial "network" (x / 2): what is left of a sampler step is the sampler's own work."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond: Any) -> torch.Tensor:
        return x * 0.5


def sampler_overhead(shape: tuple[int, ...], steps: list[int], *, device: str) -> dict[str, Any]:
    """Seconds per step of the DDPM (v) and Euler samplers themselves on a latent of ``shape``
    (the SR stage's full latent): the same trivial net in both, so the fitted per-step costs hold
    the time conversion, the update, and for DDPM the per-case noise drawn on ``device``."""
    from medidiff.objectives import DDPMObjective, FlowMatchingObjective
    from medidiff.samplers import generators_from_seeds, sample_ddpm, sample_euler, step_generators

    net = _HalfNet()
    out: dict[str, Any] = {"latent": list(shape), "net": "x / 2 (trivial)"}
    x = torch.randn(shape, device=device)
    for name, obj, fn in (("euler", FlowMatchingObjective(ObjectiveConfig(type="flow")), sample_euler),
                          ("ddpm", DDPMObjective(ObjectiveConfig(type="ddpm", prediction="v")), sample_ddpm)):
        den = obj.denoiser(net)
        secs = []
        for k in [steps[0], *steps]:  # the first run warms up (allocator, tables on the device)
            gens = step_generators(generators_from_seeds(range(shape[0])), device)
            _sync(device)
            start = time.perf_counter()
            fn(den, x, obj.timesteps(k), generators=gens)
            _sync(device)
            secs.append(time.perf_counter() - start)
        out[f"{name}_fit"] = fit_fixed_plus_steps(steps, secs[1:])
    out["ddpm_vs_euler_per_step"] = round(out["ddpm_fit"]["per_step_s"] / out["euler_fit"]["per_step_s"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="32^3 grid and tiny nets (CPU smoke test)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30],
                   help="flow steps K per stage (>= 3 distinct counts: time = fixed + K x per-step is fitted)")
    p.add_argument("--ddpm-steps", type=int, default=1000)
    p.add_argument("--ddpm-measure-steps", type=int, default=20, help="steps timed, then extrapolated")
    p.add_argument("--ddpm-full", action="store_true", help="time all --ddpm-steps (slow)")
    p.add_argument("--sr-mode", nargs="+", choices=["whole", "patches"], default=["whole"])
    p.add_argument("--cases", type=int, default=2, help="timed cases (after one warm-up case)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile every UNet block")
    p.add_argument("--profile", action="store_true", help="also profile one flow case at the largest --steps")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    refusal = None
    if len(set(args.steps)) < 3:
        refusal = (f"--steps {' '.join(map(str, args.steps))}: give at least three distinct step counts (time = "
                   "fixed + K x per-step is fitted by least squares; two points fit any line exactly)")
    elif args.ddpm_measure_steps < 1:
        refusal = f"--ddpm-measure-steps {args.ddpm_measure_steps}: must be >= 1"
    elif args.device.startswith("cuda") and not torch.cuda.is_available():
        refusal = "--device cuda: no CUDA device here; use --device cpu --tiny"
    if refusal is not None:
        print(f"cascade_bench: {refusal}", file=sys.stderr)
        return 2
    setting = TINY if args.tiny else FULL
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    autocast = (torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)
                if precision == "bf16" else contextlib.nullcontext())
    torch.manual_seed(0)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()

    results = []
    for mode in args.sr_mode:
        flow = build_cascade(setting, objective="flow", sr_mode=mode, device=args.device, compile=args.compile)
        flow_secs = []
        for k in args.steps:
            sec = time_cases(flow, k, cases=args.cases, device=args.device, autocast=autocast)
            flow_secs.append(sec)
            results.append({"name": f"cascade_flow_{k}", "objective": "flow", "sampler": "euler", "base_steps": k,
                            "sr_steps": k, "sr_mode": mode, "seconds_per_case": round(sec, 4), "measured": True})
            print(json.dumps(results[-1]), flush=True)
        flow_fit = fit_fixed_plus_steps(list(args.steps), flow_secs)
        results.append({"name": "cascade_flow_fit", "objective": "flow", "sampler": "euler", "sr_mode": mode,
                        "fit": flow_fit})
        print(json.dumps(results[-1]), flush=True)
        if args.profile:
            results.append({"name": "cascade_flow_profile", "sr_mode": mode,
                            **profile_case(flow, max(args.steps), device=args.device, autocast=autocast)})
            print(json.dumps({k: results[-1][k] for k in ("sampler_steps_per_stage", "wall_ms_per_step",
                                                          "phase_cpu_ms_per_step")}),
                  flush=True)
        del flow
        ddpm = build_cascade(setting, objective="ddpm", sr_mode=mode, device=args.device, compile=args.compile)
        row = {"name": f"cascade_ddpm_{args.ddpm_steps}", "objective": "ddpm", "sampler": "ddpm",
               "base_steps": args.ddpm_steps, "sr_steps": args.ddpm_steps, "sr_mode": mode, "measured": args.ddpm_full}
        if args.ddpm_full:
            row["seconds_per_case"] = round(time_cases(ddpm, args.ddpm_steps, cases=args.cases, device=args.device,
                                                       autocast=autocast), 3)
        else:  # cost = fixed (decode, conditioning) + steps x per-step cost, fitted over n, 2n, 3n steps
            n = min(args.ddpm_measure_steps, args.ddpm_steps)
            ks = [n, 2 * n, 3 * n]
            ts = [time_cases(ddpm, k, cases=1, device=args.device, autocast=autocast) for k in ks]
            fit = fit_fixed_plus_steps(ks, ts)
            row["seconds_per_case"] = round(fit["fixed_s"] + args.ddpm_steps * fit["per_step_s"], 3)
            row.update(extrapolated_from_steps=ks, measured_seconds_per_case=[round(t, 4) for t in ts], fit=fit)
            # both stages take one net call per step with the same nets, so the per-step costs compare
            # the samplers' own work (issue 15 asks for a DDPM step within 1.2x of an Euler step)
            row["ddpm_vs_euler_per_step"] = round(fit["per_step_s"] / flow_fit["per_step_s"], 3)
            row["ddpm_vs_euler_target"] = 1.2
        results.append(row)
        print(json.dumps(row), flush=True)
        del ddpm
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    probe = build_cascade(setting, objective="flow", sr_mode="whole", device="cpu", compile=False)
    c, *roi = probe.sr.high_res_shape
    sr_latent = (1, *probe.sr.codec.latent_shape(probe.sr.high_res_shape))
    results.append({"name": "sampler_overhead", **sampler_overhead(sr_latent, list(args.steps), device=args.device)})
    print(json.dumps(results[-1]), flush=True)
    record = {
        "benchmark": "cascade", "device": name, "device_arg": args.device,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch": torch.__version__, "precision": precision, "compile": args.compile,
        "weights": "random (timing only: sampling cost does not depend on the weights)",
        "setting": "tiny" if args.tiny else "full",
        "shapes": {"output_case": [len(probe.cfg.data.modalities), *roi], "brats_case": [4, 240, 240, 155],
                   "generated_channels": c, "base_grid": list(probe.base.image_shape[1:]),
                   "base_latent": list(probe.base.codec.latent_shape(probe.base.image_shape)),
                   "sr_latent": list(probe.sr.codec.latent_shape(probe.sr.high_res_shape)),
                   "sr_patch": list(setting["patch"])},
        "nets": {"base_params": count_parameters(probe.base.net), "sr_params": count_parameters(probe.sr.net),
                 "base_channels": list(setting["base_channels"]), "sr_channels": list(setting["sr_channels"])},
        "batch": 1, "cases_timed": args.cases, "target_seconds_per_case": 5.0, "results": results,
    }
    write_record(record, args.out, stem="cascade", device=name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
