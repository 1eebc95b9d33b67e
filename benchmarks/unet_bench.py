"""Benchmark medidiff's UNet3D against MONAI's DiffusionModelUNet (training and sampling speed).

The WDM-128 task: an 8-channel 64^3 wavelet latent (one-level Haar of a 4-modality 128^3 volume),
batch 8, bf16, forward + backward + AdamW step. Each variant builds a fresh model, counts the FLOPs
of one forward+backward with ``torch.utils.flop_counter.FlopCounterMode``, times ``--steps``
steps with CUDA events after ``--warmup`` steps (the first of which includes compilation), and
records the median step time, volumes/s, TFLOP/s, % of the card's dense bf16 peak and peak memory.

Variants (``--variants``; each in its own try/except so one failure does not stop the rest):
  monai_autocast        MONAI DiffusionModelUNet, eager, autocast bf16, NCDHW (what users get)
  monai_compiled        the same under torch.compile
  med_eager_autocast    UNet3D, eager, autocast bf16, channels_last_3d
  med_compiled_autocast UNet3D, torch.compile, autocast bf16, channels_last_3d
  med_compiled_bf16     UNet3D, torch.compile, bf16 weights and activations, fp32 master weights
                        in the optimizer (what DeepSpeed's bf16 mode does)
  big_checkpointed      UNet3D at --big-size^3, batch 1, activation checkpointing: peak memory
  sampling              forward time at batch 1 (64^3 and --big-size^3) under inference_mode

Measured (H200, torch 2.11 + cu130, cuDNN 9.19, batch 8 x 8 x 64^3, results/unet_nvidia_h200_*.json):
  monai_autocast (widths 64 128 128 256 256, 2 blocks)  74.2M  40 vol/s  19% peak  29 GiB
  monai_compiled                                        74.2M  57 vol/s  27%       13 GiB
  UNet3D matched blocks (2/level, concat)               58.0M  82 vol/s  24%       10 GiB  (2.05x MONAI eager)
  parameter-matched: --med-res-blocks 1 2 2 4 4 --skip add (2026-11-26, one warm machine):
    GroupNorm, torch.compile                            77.1M 108 vol/s  18%      6.5 GiB (2.69x eager, 1.89x compiled MONAI)
    --norm pixel, torch.compile                         77.1M 138 vol/s  23%      6.0 GiB (3.46x MONAI eager)
    --norm pixel --compile-mode reduce-overhead         77.1M 189 vol/s  31.5%          (4.75x MONAI eager)
  128^3 batch 1, checkpointing, bf16: 7.6 GiB (matched) / 5.3 GiB (1 2 2 3 3) / 7.5 GiB (1 2 2 4 4, pixel).
  Sampling forward, batch 1, compiled bf16 vs MONAI eager: 8.8 vs 26 ms (64^3), 46 vs 136 ms (128^3).
  Peak memory under CUDA graphs (reduce-overhead) lives in the graph pool allocated during warm-up:
  see peak_mem_incl_warmup_gib (recorded from 2026-11-26 on; the 1.3 GiB in that file excludes it).

Examples::

    python benchmarks/unet_bench.py                       # GPU, WDM-128 settings (~7.5 min on H200)
    python benchmarks/unet_bench.py --med-res-blocks 1 2 2 3 3 --skip add   # our fast config
    python benchmarks/unet_bench.py --device cpu --batch 1 --size 16 --channels 8 16 16 --steps 2
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import math
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from medidiff.nets import NetConfig, build_net, count_parameters

ALL_VARIANTS = [
    "monai_autocast",
    "monai_compiled",
    "med_eager_autocast",
    "med_compiled_autocast",
    "med_compiled_bf16",
    "big_checkpointed",
    "sampling",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dense_bf16_peak(device: torch.device, override: float | None) -> float | None:
    """Dense (no sparsity) bf16 tensor-core peak in TFLOP/s from the datasheet."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756.0
    if "H100" in name or "H200" in name or "GH200" in name:
        return 989.0  # SXM: 1979 with 2:4 sparsity, 989 dense
    if "A100" in name:
        return 312.0
    return None


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any], n: int) -> list[float]:
        """Milliseconds of each of n calls (CUDA events on GPU, perf_counter on CPU)."""
        out = []
        for _ in range(n):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
        return out


def perturb(model: nn.Module) -> None:
    """Give zero-initialised weights small values so outputs (and the error check) are non-trivial."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)


def make_cfg(args: argparse.Namespace, kind: str, **over: Any) -> NetConfig:
    ch = tuple(args.channels)
    groups = args.norm_groups or min(32, math.gcd(*ch))
    common = dict(
        in_channels=args.in_channels, out_channels=args.in_channels, channels=ch, norm_groups=groups,
        head_dim=min(32, ch[-1]),
    )
    if kind == "monai":
        nrb = tuple(args.monai_res_blocks) if args.monai_res_blocks else args.num_res_blocks
        # what DiffusionModelUNet builds: bottleneck attention, additive time embedding
        cfg = dict(common, type="monai", resample="conv", skip="concat", stem_patch=1,
                   num_res_blocks=nrb, channels_last=False, mid_attention=True, use_scale_shift_norm=False)
    else:
        nrb = tuple(args.med_res_blocks) if args.med_res_blocks else args.num_res_blocks
        cfg = dict(common, type="unet3d", resample=args.resample, skip=args.skip, stem_patch=args.stem_patch,
                   num_res_blocks=nrb, channels_last=True, mid_attention=True, norm=args.norm)
    cfg.update(over)
    return NetConfig(**cfg)


class Step:
    """One training step: forward, MSE to a random target, backward, AdamW."""

    def __init__(self, model: nn.Module, x: torch.Tensor, mode: str, device: torch.device,
                 cond: dict[str, torch.Tensor] | None = None) -> None:
        self.model = model
        self.x = x
        self.cond = cond or {}  # conditioning inputs of a conditioned net (cond_image, context, ...)
        self.t = torch.rand(x.shape[0], device=device)
        self.target = torch.randn_like(x)
        self.mode = mode
        self.device = device
        fused = device.type == "cuda"
        if mode == "bf16":
            # bf16 weights in the model, fp32 master copies in the optimizer (DeepSpeed bf16 mode)
            self.params = [p for p in model.parameters() if p.requires_grad]
            self.master = [p.detach().float().clone().requires_grad_(True) for p in self.params]
            self.opt = torch.optim.AdamW(self.master, lr=1e-5, fused=fused)
        else:
            self.opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)

    def forward_backward(self) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mode == "autocast"):
            y = self.model(self.x, self.t, **self.cond)
        loss = (y.float() - self.target).square().mean()
        loss.backward()
        return loss

    def __call__(self) -> None:
        if self.mode == "bf16":
            for p in self.params:
                p.grad = None
        else:
            self.opt.zero_grad(set_to_none=True)
        self.forward_backward()
        if self.mode == "bf16":
            for m, p in zip(self.master, self.params):
                m.grad = p.grad.float()
            self.opt.step()
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.master)
        else:
            self.opt.step()


def count_flops(model: nn.Module, x: torch.Tensor, mode: str, device: torch.device,
                cond: dict[str, torch.Tensor] | None = None) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    t = torch.rand(x.shape[0], device=device)
    with FlopCounterMode(display=False) as fc:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "autocast"):
            y = model(x, t, **(cond or {}))
        y.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def rel_error_vs_fp32(model: nn.Module, cfg: NetConfig, x: torch.Tensor, mode: str, device: torch.device) -> float:
    """‖fast − fp32‖ / ‖fp32‖ of one forward: guards against wrong fast conv paths (pytorch #163539)."""
    ref = copy.deepcopy(model).float()
    t = torch.rand(x.shape[0], device=device)
    with torch.no_grad():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=False):
            r = ref(x.float(), t).float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "autocast"):
            y = model(x, t).float()
    del ref
    return float((y - r).norm() / r.norm().clamp_min(1e-12))


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_train(
    args: argparse.Namespace, name: str, cfg: NetConfig, mode: str, compile_: bool, device: torch.device,
    batch: int, size: int, peak: float | None, check: bool = True,
) -> dict[str, Any]:
    free(device)
    torch.manual_seed(0)
    model = build_net(cfg).to(device)
    perturb(model)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    res: dict[str, Any] = {"variant": name, "mode": mode, "compiled": compile_, "batch": batch, "size": size,
                           "params": count_parameters(model), "config": {k: v for k, v in vars(cfg).items()}}
    x = torch.randn(batch, cfg.in_channels, size, size, size, device=device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    if not cfg.checkpointing:
        res["flops_per_step"] = count_flops(model, x, mode, device)
    if check:
        res["rel_err_vs_fp32"] = rel_error_vs_fp32(model, cfg, x, mode, device)
    run_model = torch.compile(model, mode=args.compile_mode) if compile_ else model
    step = Step(run_model, x, mode, device)
    timer = Timer(device)
    t0 = time.perf_counter()
    warm = timer(step, args.warmup)
    res["first_step_s"] = warm[0] / 1e3
    res["warmup_s"] = time.perf_counter() - t0
    if device.type == "cuda":
        # CUDA graphs (reduce-overhead) allocate their pool during warm-up: keep that peak too
        res["peak_mem_incl_warmup_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    times = timer(step, args.steps)
    med = statistics.median(times)
    res["step_ms_median"] = med
    res["step_ms_min"] = min(times)
    res["vol_per_s"] = batch / (med / 1e3)
    if "flops_per_step" in res:
        res["tflops"] = res["flops_per_step"] / (med / 1e3) / 1e12
        if peak:
            res["pct_peak"] = 100.0 * res["tflops"] / peak
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        res["peak_mem_incl_warmup_gib"] = max(res["peak_mem_incl_warmup_gib"], res["peak_mem_gib"])
    del step, run_model, model, x
    free(device)
    return res


def bench_sampling(
    args: argparse.Namespace, name: str, cfg: NetConfig, mode: str, compile_: bool, device: torch.device, sizes: list[int],
) -> dict[str, Any]:
    free(device)
    model = build_net(cfg).to(device).eval()
    perturb(model)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    run_model = torch.compile(model, mode=args.compile_mode) if compile_ else model
    res: dict[str, Any] = {"variant": name, "mode": mode, "compiled": compile_}
    timer = Timer(device)
    for s in sizes:
        x = torch.randn(1, cfg.in_channels, s, s, s, device=device)
        t = torch.rand(1, device=device)

        def fwd() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "autocast"):
                run_model(x, t)

        t0 = time.perf_counter()
        timer(fwd, max(2, args.warmup))
        res[f"warmup_s_{s}"] = time.perf_counter() - t0
        res[f"fwd_ms_{s}"] = statistics.median(timer(fwd, max(3, args.steps)))
    del run_model, model
    free(device)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--big-size", type=int, default=128, help="volume side for the checkpointed batch-1 run")
    ap.add_argument("--in-channels", type=int, default=8)
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 128, 128, 256, 256])
    ap.add_argument("--num-res-blocks", type=int, default=2, help="both nets")
    ap.add_argument("--med-res-blocks", type=int, nargs="+", default=None, help="UNet3D per-level override")
    ap.add_argument("--monai-res-blocks", type=int, nargs="+", default=None,
                    help="MONAI per-level override (to match UNet3D's parameter count)")
    ap.add_argument("--norm", choices=["group", "pixel"], default="group", help="UNet3D normalisation")
    ap.add_argument("--skip", choices=["concat", "add"], default="concat")
    ap.add_argument("--resample", choices=["conv", "patch"], default="patch")
    ap.add_argument("--stem-patch", type=int, default=1)
    ap.add_argument("--norm-groups", type=int, default=0, help="0 = min(32, gcd(channels))")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=ALL_VARIANTS, choices=ALL_VARIANTS)
    ap.add_argument("--compile-mode", default=None,
                    choices=[None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                    help="torch.compile mode for the compiled variants (reduce-overhead = CUDA graphs)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak if not an H100/H200")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/unet_<device>_<date>.json)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # picks the fast NDHWC 3D conv algorithms per shape
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = platform.processor() or "cpu"
    peak = dense_bf16_peak(device, args.peak_tflops)
    meta = {
        "device": dev_name,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "peak_bf16_dense_tflops": peak,
        "args": vars(args),
    }
    log(f"device {dev_name}, torch {torch.__version__}, cuDNN {meta['cudnn']}, peak {peak} TFLOP/s")
    b, s = args.batch, args.size
    results: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        f"unet_{re.sub(r'[^A-Za-z0-9]+', '_', dev_name).strip('_').lower()}_{dt.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in args.variants:
            return
        log(f"{name} ...")
        try:
            r = fn()
            results.append(r)
            log(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in r.items() if k != "config"))
        except Exception as exc:  # noqa: BLE001 - one variant's failure must not stop the rest
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} FAILED: {errors[name]}")
            traceback.print_exc()
            free(device)
        # written after every variant so a run cut off by a time limit still leaves its numbers
        out.write_text(json.dumps({"meta": meta, "results": results, "errors": errors}, indent=2, default=str))

    mcfg = make_cfg(args, "monai")
    ucfg = make_cfg(args, "unet3d")
    attempt("monai_autocast", lambda: bench_train(args, "monai_autocast", mcfg, "autocast", False, device, b, s, peak))
    attempt("med_eager_autocast", lambda: bench_train(args, "med_eager_autocast", ucfg, "autocast", False, device, b, s, peak))
    attempt("med_compiled_autocast", lambda: bench_train(args, "med_compiled_autocast", ucfg, "autocast", True, device, b, s, peak, check=False))
    attempt("med_compiled_bf16", lambda: bench_train(args, "med_compiled_bf16", ucfg, "bf16", True, device, b, s, peak))
    big = args.big_size
    ck = make_cfg(args, "unet3d", checkpointing=True)
    attempt("big_checkpointed", lambda: bench_train(args, "big_checkpointed", ck, "bf16", False, device, 1, big, peak, check=False))
    sizes = sorted({s, big})
    attempt("sampling", lambda: {
        "variant": "sampling",
        "medidiff_compiled_bf16": bench_sampling(args, "sampling_med", ucfg, "bf16", True, device, sizes),
        "monai_autocast": bench_sampling(args, "sampling_monai", mcfg, "autocast", False, device, sizes),
    })
    # MONAI compiled last: its compile is the slowest and the likeliest to fail
    attempt("monai_compiled", lambda: bench_train(args, "monai_compiled", mcfg, "autocast", True, device, b, s, peak, check=False))

    by = {r["variant"]: r for r in results}
    ratios: dict[str, float] = {}
    base = by.get("monai_autocast", {}).get("vol_per_s")
    if base:
        for k, r in by.items():
            if "vol_per_s" in r and r.get("batch") == b and r.get("size") == s and k != "monai_autocast":
                ratios[f"{k}_vs_monai_autocast"] = r["vol_per_s"] / base
    mc = by.get("monai_compiled", {}).get("vol_per_s")
    if mc:
        for k in ("med_compiled_autocast", "med_compiled_bf16"):
            if k in by:
                ratios[f"{k}_vs_monai_compiled"] = by[k]["vol_per_s"] / mc

    report = {"meta": meta, "results": results, "ratios": ratios, "errors": errors}
    out.write_text(json.dumps(report, indent=2, default=str))

    print(f"\n## UNet benchmark: {dev_name}, torch {torch.__version__}, cuDNN {meta['cudnn']}, "
          f"input ({b}, {args.in_channels}, {s}^3)\n", flush=True)
    print("| variant | params (M) | step ms | vol/s | TFLOP/s | % bf16 peak | peak GiB | rel err | first step s |")
    print("|---|---|---|---|---|---|---|---|---|")

    def f(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for r in results:
        if "step_ms_median" not in r:
            continue
        label = r["variant"] + (f" ({r['batch']}x{r['size']}^3)" if r["batch"] != b or r["size"] != s else "")
        print(f"| {label} | {r['params'] / 1e6:.1f} | {f(r['step_ms_median'], '.1f')} | {f(r['vol_per_s'], '.1f')} | "
              f"{f(r.get('tflops'), '.1f')} | {f(r.get('pct_peak'), '.1f')} | {f(r.get('peak_mem_gib'), '.2f')} | "
              f"{f(r.get('rel_err_vs_fp32'), '.1e')} | {f(r.get('first_step_s'), '.1f')} |")
    if "sampling" in by:
        print("\n| sampling, batch 1 forward (ms) | " + " | ".join(f"{z}^3" for z in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for k in ("medidiff_compiled_bf16", "monai_autocast"):
            r = by["sampling"][k]
            print(f"| {k} | " + " | ".join(f(r.get(f'fwd_ms_{z}'), '.2f') for z in sizes) + " |")
    for k, v in ratios.items():
        print(f"- {k}: {v:.2f}x")
    for k, v in errors.items():
        print(f"- FAILED {k}: {v}")
    print(f"\nwrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
