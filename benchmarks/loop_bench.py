"""The training loop users run against its own network, in one process on one card (issue 15).

1. ``medidiff train``'s loop (the config's stage: ``train_diffusion``, or ``train_sr`` for
   ``configs/cascade_sr.yaml``) on a shipped config (default ``configs/wavelet_flow.yaml``) plus
   ``--set`` overrides, on phantom cases written at the config's roi, for ``--steps`` steps:
   steady-state steps/s from the loop's own log windows (the first ``--skip-windows`` windows,
   with compilation and cache filling, are dropped). For the SR stage a "volume" is one training
   patch (``cascade.patch_size``).
2. The same network alone (the net config the loop resolved, the same batch and latent shape,
   random conditioning inputs of the loop's shapes for a conditioned net):
   forward + MSE + backward + AdamW, timed as ``unet_bench.py`` does (``--net-mode``: bf16 weights
   with fp32 masters as DeepSpeed's bf16 mode, or autocast), compiled when the config compiles.
3. ``loop_vs_net`` = loop vol/s / net vol/s (the goal is >= 0.8), and the net step's model FLOPs
   utilisation against the datasheet dense bf16 peak (989 TFLOP/s on H100/H200) and against the
   measured matmul peak of the card (``--measured-peak-tflops``, 805 on the H200 here).
4. The loop's own loader alone (the dataset, collate, workers and pinning ``fit`` built, captured
   from the run): ``--loader-batches`` batches moved to the device with nothing else running,
   vol/s and MiB a batch. ``loader_vs_net`` < 1 means the net outruns its data: the loop is
   loader-bound whatever the step does (the anatomy recipe with CUDA graphs, loop_h200_20261201b).

    python benchmarks/loop_bench.py --out benchmarks/results/loop_<card>_<date>.json            # shipped config
    python benchmarks/loop_bench.py --set net.norm=pixel --set net.skip=add ... --out ...      # another config
    python benchmarks/loop_bench.py --smoke --device cpu --out /tmp/loop.json                   # CPU check

Every shipped config's stage is timed: ``diffusion`` (wavelet_flow, mask_flow, text_flow,
anatomy_2mm, vae_ldm, ...), ``sr`` (cascade_sr) and ``vae``. A latent diffusion config
(``latent.type: pretrained`` without a latent cache, as vae_ldm ships) gets a VAE codec with random
weights of ``configs/vae.yaml``'s architecture, written to the scratch folder; its loop encodes each
batch with it, as the shipped config's does, or with ``--latent-cache`` reads latents encoded once
beforehand (``medidiff latents encode``, README's latent diffusion steps). A text config gets a random text encoder of CLIP
ViT-L/14's text-tower size (768 wide, 12 layers, 77 tokens; the tests' small BPE vocabulary), written
to the scratch folder: nothing is downloaded, and the loop encodes each prompt once (its embedding
cache), so the encoder's size matters only for the first epoch. The net alone then reads random
77-token contexts, 24 of them unmasked (a built prompt's length). The VAE's net alone is its
encoder, reparameterisation and decoder with an MSE to a random target in place of L1 + KL (the
same convolutions; two reductions differ); it is MONAI's AutoencoderKL, so there is no separate
MONAI row for it.

What it cannot show: the loop on several GPUs (zero_bench.py), or a loader-bound loop on data that
does not fit in memory (the phantoms are cached in memory here).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import unet_bench  # noqa: E402  (the net-alone timing: one implementation for both benchmarks)
from sr_loader_bench import batch_mib  # noqa: E402  (the bytes of a batch, as the SR loader's benchmark counts them)

from medidiff.config import load_config  # noqa: E402
from medidiff.data.manifest import build_brats_manifest, write_manifest  # noqa: E402
from medidiff.data.prepare import write_synthetic_set  # noqa: E402
from medidiff.nets import build_net  # noqa: E402
from medidiff.training import loop as loop_module  # noqa: E402
from medidiff.training.device_data import DeviceBatches  # noqa: E402
from medidiff.training.diffusion import build_codec_for, resolve_net_config, run_dir_of  # noqa: E402
from medidiff.training.stages import STAGES  # noqa: E402

ORIGINAL_STEP = loop_module._train_step
ORIGINAL_LOADER = loop_module._loader
SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "wavelet_flow.yaml"
SMOKE_SR = ["cascade.patch_size=[8, 8, 8]"]  # with SMOKE's 16^3 roi and 2-level net
# the text config's 4-level attention layout on SMOKE's 2-level net, reading the tiny encoder's 32 wide tokens
SMOKE_TEXT = ["net.attention_levels=[false, true]", "net.head_dim=8", "net.cross_attention_dim=32",
              "conditioning.text.max_length=32"]
# the latent diffusion config's 3-level attention layout on SMOKE's 2-level net (4^3 latents of a 16^3 roi)
SMOKE_LDM = ["net.attention_levels=[false, true]", "net.head_dim=8"]
SMOKE = ["data.roi=[16, 16, 16]", "data.num_workers=0", "net.channels=[8, 16]", "net.num_res_blocks=1", "net.norm_groups=4",
         "latent.stats_batches=1", "train.precision=fp32", "train.micro_batch=2", "train.log_every=2",
         "train.warmup_steps=1"]


def loop_rate(run_dir: Path, skip_windows: int, exclude: tuple[int, int] | None = None) -> dict[str, float]:
    """Steady-state steps/s of a run: the median of its log windows after the first few, leaving
    out any window that holds a step of ``exclude`` (first, last): the profiled steps, whose
    profiler start and teardown (seconds of trace processing) land in one window. On the
    2026-11-30 quiet-host run that window was one of the two kept: the fast config's loop read
    68.6 ms a step against 46.0 ms in the profiled steps themselves."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    windows, prev = [], 0
    for r in rows:
        if "steps_per_s" in r:
            windows.append((prev + 1, r["step"], r["steps_per_s"]))
            prev = r["step"]
    after_warmup = windows[skip_windows:] or windows
    kept = [w for w in after_warmup if exclude is None or w[1] < exclude[0] or w[0] > exclude[1]] or after_warmup
    if not kept:
        raise SystemExit(f"{run_dir}/metrics.jsonl has no steps_per_s: raise --steps or lower train.log_every")
    return {"steps_per_s": statistics.median(w[2] for w in kept), "windows": len(kept),
            "windows_dropped": len(windows) - len(kept), "window_rates": [round(w[2], 3) for w in windows]}


def profiling_steps(step_fn: Callable[..., None], start: int, n: int, device: torch.device,
                    into: dict[str, Any]) -> Callable[..., None]:
    """``step_fn`` that profiles its calls start..start+n-1 and writes the split into ``into``:
    per step, the wall time, the CPU time of each ``medidiff/...`` phase label of the loop (data,
    forward, backward, optimizer, ema, periodic), the GPU's busy time, host-device copies and
    synchronisations, and the top CUDA kernels."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    calls = {"n": 0}
    state: dict[str, Any] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def wrapped(*a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] == start:
            sync()
            state["prof"] = profile(activities=acts)
            state["prof"].__enter__()
            state["t0"] = time.perf_counter()
        step_fn(*a, **k)
        if calls["n"] == start + n - 1 and "prof" in state:
            sync()
            wall = time.perf_counter() - state["t0"]
            state["prof"].__exit__(None, None, None)
            into.update(split_profile(state.pop("prof"), wall, n))
    return wrapped


def split_profile(prof: Any, wall_s: float, n: int) -> dict[str, Any]:
    events = prof.key_averages()
    per = lambda us: round(us / n / 1e3, 3)  # noqa: E731  (microseconds in all -> ms per step)
    # a label's time is its total on the CPU, but its self time where torch records the range on the
    # GPU timeline too (the 2026-11-30 H200 run gave cpu_time_total 0 there)
    from torch.autograd import DeviceType

    # the CPU event of each range: its twin on the device timeline (same key, no CPU time) came last
    # and overwrote it, so the 2026-12-01 H200 runs recorded 0.0 ms for every phase
    phases = {e.key.removeprefix("medidiff/"): per(e.cpu_time_total or e.self_cpu_time_total)
              for e in events if e.key.startswith("medidiff/")
              and getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU}
    # kernels and copies only (events that run on the device): operator and range events carry the
    # same device time again, and summing them double-counted (gpu busy > wall)

    # record_function ranges (medidiff/..., Optimizer.step#...) also appear on the device timeline as
    # spans that contain those kernels (and idle gaps): the 2026-11-30 plain-engine run counted them
    # as kernels (gpu busy 157 ms, of which ~37 ms were kernels). A range has a CPU event of its key.
    host_keys = {e.key for e in events if getattr(e, "device_type", None) == DeviceType.CPU}
    cuda = [(e.key, float(getattr(e, "self_device_time_total", 0.0) or 0.0), e.count) for e in events
            if getattr(e, "device_type", None) == DeviceType.CUDA and e.key not in host_keys]
    kernels = sorted((c for c in cuda if c[1] > 0), key=lambda c: -c[1])
    counts = {e.key: e.count / n for e in events}
    sync_keys = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
    return {
        "steps": n, "wall_ms_per_step": round(wall_s / n * 1e3, 3),
        "phase_cpu_ms_per_step": phases,
        "phase_launches_per_step": launches_by_phase(prof.events(), n),
        "gpu_busy_ms_per_step": per(sum(c[1] for c in kernels)),
        "kernel_launches_per_step": counts.get("cudaLaunchKernel", 0.0) + counts.get("cuLaunchKernel", 0.0),
        "host_syncs_per_step": {k: v for k, v in counts.items() if k.startswith(sync_keys)},
        "memcpy_per_step": {k: v for k, v in counts.items() if k.startswith("Memcpy")},
        "top_kernels_ms_per_step": [[k, per(us), round(c / n, 1)] for k, us, c in kernels[:15]],
        "top_cpu_ops_ms_per_step": [[e.key, per(e.self_cpu_time_total), round(e.count / n, 1)]
                                    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]],
    }


_LAUNCH_KEYS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")


def launches_by_phase(events: Any, n: int) -> dict[str, float]:
    """Per step, what each ``medidiff/...`` phase asks the device to run: on a GPU its kernel launches
    (``cudaLaunchKernel`` events under the phase's range), on a CPU its leaf ``aten::`` operators
    (those that call no other operator), which is what would become kernels. A host-bound step is
    paid per launch, so this says which phase to fuse or capture."""
    def walk(e: Any) -> tuple[int, int]:  # (launches, leaf aten ops) under e
        kids = list(getattr(e, "cpu_children", []) or [])
        own_launch = int(e.name.startswith(_LAUNCH_KEYS))
        if not kids:
            return own_launch, int(e.name.startswith("aten::"))
        launches = leaves = 0
        for k in kids:
            a, b = walk(k)
            launches, leaves = launches + a, leaves + b
        return launches + own_launch, leaves
    def outermost_phase(e: Any) -> bool:
        parent = getattr(e, "cpu_parent", None)
        while parent is not None:
            if parent.name.startswith("medidiff/"):
                return False
            parent = getattr(parent, "cpu_parent", None)
        return e.name.startswith("medidiff/")

    totals: dict[str, list[int]] = {}
    for e in events:
        if outermost_phase(e):
            a, b = walk(e)
            t = totals.setdefault(e.name.removeprefix("medidiff/"), [0, 0])
            t[0], t[1] = t[0] + a, t[1] + b
    use_launches = any(a for a, _ in totals.values())
    return {k: round((a if use_launches else b) / n, 1) for k, (a, b) in totals.items()}


def capturing_loader(seen: dict[str, Any]) -> Callable[..., Any]:
    """``loop._loader`` that remembers what ``fit`` built its loader from, to time it alone later."""

    def wrapped(*args: Any) -> Any:
        seen["args"] = args
        batches = ORIGINAL_LOADER(*args)
        seen["held"] = isinstance(batches, DeviceBatches)  # train.data_on_device (auto may fall back)
        return batches

    return wrapped


def loader_alone(args: tuple[Any, ...], batches: int, device: torch.device) -> dict[str, Any]:
    """The loop's loader (same dataset, collate, workers, pinning) with nothing else running:
    ``batches`` batches after 2 per worker (at least 2) of warm-up, each moved to ``device`` as the
    loop moves it."""
    workers = args[-1]
    run = args[0]  # the loader only: data_on_device auto that fell back must not try to hold the set again
    run.cfg = dataclasses.replace(run.cfg, data_on_device=False)
    it = iter(ORIGINAL_LOADER(*args))
    try:
        # every worker's first batches are made while the others start: warm up past them, or the
        # window opens on finished batches
        for _ in range(max(2, 2 * workers)):
            batch = loop_module.move_to(next(it), device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        volumes = 0
        for _ in range(batches):
            batch = loop_module.move_to(next(it), device)
            volumes += len(batch["case_id"]) if isinstance(batch, dict) and "case_id" in batch else 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    finally:
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
    mib = batch_mib(batch) if isinstance(batch, dict) else None
    return {"batches": batches, "vol_per_s": volumes / wall, "mib_per_batch": mib, "num_workers": workers}


def bench_text_encoder(out: Path, smoke: bool) -> Path:
    """A random text encoder in ``out`` (see the module docstring): CLIP-L's text-tower width, depth and
    token count, or the tests' tiny one with --smoke. Written once; nothing is downloaded."""
    if not (out / "config.json").is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "conditioning"))
        from tiny_clip import write_tiny_clip

        size = {} if smoke else {"hidden": 768, "layers": 12, "heads": 12, "max_length": 77}
        write_tiny_clip(out, **size)
    return out


def bench_vae_codec(out: Path, modalities: list[str], smoke: bool) -> Path:
    """A VAE codec with random weights in ``out``: the architecture ``configs/vae.yaml`` trains (the
    VAE that ``vae_ldm.yaml``'s latent.path names), for these modalities, or a tiny one with --smoke.
    Its latent statistics stay unset (the loop trains on raw posterior means); the encoder's cost a
    step is the same as a trained one's. Written once."""
    if not (out / "config.json").is_file():
        from medidiff.latents.vae import VAECodec
        from medidiff.latents.vae_task import codec_config_of

        size = ["vae.channels=[8, 8, 8]"] if smoke else []
        vae_cfg = load_config(SHIPPED.parent / "vae.yaml", [f"data.modalities={list(modalities)}", *size])
        torch.manual_seed(0)
        VAECodec(codec_config_of(vae_cfg)).save_pretrained(out)
    return out


def encode_latents(cfg: Any, config: str, overrides: list[str], device: torch.device) -> None:
    """``medidiff latents encode`` of the bench's cases with the config's codec into ``latent.cache``,
    as README's latent diffusion steps do before training (not timed: the loop reads the cache)."""
    from medidiff.cli.main import main as medidiff

    sets = [a for o in overrides if not o.startswith("latent.cache=") for a in ("--set", o)]
    code = medidiff(["latents", "encode", "--codec", cfg.latent.path, "--manifest", cfg.data.manifest, "--root",
                     cfg.data.root, "--out", cfg.latent.cache, "--config", config, "--device", str(device), *sets])
    if code != 0:
        raise SystemExit(f"medidiff latents encode failed (exit {code})")


class VAEAsNet(torch.nn.Module):
    """The VAE training module as ``net(x, t)``: encoder, reparameterisation, decoder -> x_hat, so
    ``unet_bench.Step`` and ``count_flops`` time and count it as they do a denoiser."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(x.device).manual_seed(0)
        return self.module(x, self.generator)["x_hat"].to(x.dtype)


def monai_alone(net_cfg: Any, x: torch.Tensor, steps: int, device: torch.device,
                cond: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """MONAI's DiffusionModelUNet at the loop net's widths, blocks and batch (autocast bf16, NCDHW,
    what MONAI's tutorials run), timed like the net alone: eager, then under torch.compile. A
    conditioning image is concatenated to its input channels, as MONAI's tutorials condition."""
    width = net_cfg.channels[-1]
    cfg = dataclasses.replace(net_cfg, type="monai", resample="conv", skip="concat", stem_patch=1, norm="group",
                              channels_last=False, mid_attention=True, use_scale_shift_norm=False,
                              head_dim=net_cfg.head_dim if width % net_cfg.head_dim == 0 else width)
    out: dict[str, Any] = {"config": {k: v for k, v in vars(cfg).items()}}
    for name, compiled in (("eager", False), ("compiled", True)):
        try:
            torch.manual_seed(0)
            model = build_net(cfg).to(device)
            run_model = torch.compile(model) if compiled else model
            step = unet_bench.Step(run_model, x, "autocast", device,  # float inputs; a context mask stays bool
                                   {k: v.float() if v.is_floating_point() else v for k, v in (cond or {}).items()})
            timer = unet_bench.Timer(device)
            for _ in range(3):
                step()
            step_s = statistics.median(timer(step, steps)) / 1e3
            out[name] = {"step_s_median": step_s, "vol_per_s": x.shape[0] / step_s}
            del step, run_model, model
        except Exception as exc:  # a MONAI build or compile failure is a result, not a crash of the benchmark
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        unet_bench.free(device)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(SHIPPED))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300, help="loop steps (log windows of train.log_every; the "
                    "warm-up windows and the one holding the profiled steps are left out of the rate)")
    ap.add_argument("--skip-windows", type=int, default=2, help="log windows dropped as warm-up")
    ap.add_argument("--net-steps", type=int, default=20)
    ap.add_argument("--net-mode", choices=["bf16", "autocast", "fp32"], default=None,
                    help="default: bf16 when the config trains in bf16, fp32 when it does, else autocast")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="datasheet dense bf16 peak")
    ap.add_argument("--measured-peak-tflops", type=float, default=805.0, help="measured bf16 matmul peak of the card")
    ap.add_argument("--work", default="/tmp/loop_bench", help="scratch folder (data, run)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="profile this many loop steps from the middle of the run: where a step goes")
    ap.add_argument("--loader-batches", type=int, default=40,
                    help="batches for the loop's loader timed alone after the loop (0: not timed)")
    ap.add_argument("--monai", action="store_true",
                    help="also time MONAI's DiffusionModelUNet at the same widths, blocks and batch, eager and compiled")
    ap.add_argument("--latent-cache", action="store_true",
                    help="(a pretrained-latent config without a cache, vae_ldm) encode the cases once and train from "
                         "the cache, as README's latent diffusion steps do; default: the config as shipped")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device (checks the script)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    work = Path(args.work).absolute()
    device = torch.device(args.device)

    overrides = [f"output_dir={work / 'runs'}", "name=loop_bench", f"data.manifest={work / 'manifest.json'}",
                 f"data.root={work / 'data'}", "data.cache=memory", "data.fold=null", f"train.device={device.type}",
                 f"train.max_steps={args.steps}", "train.ckpt_every=0", "train.val_every=0", "train.preview_every=0",
                 *(SMOKE if args.smoke else [])]
    shipped = load_config(args.config, args.overrides)  # SMOKE's sizes need more keys for some stages
    extra = []
    if args.smoke and shipped.stage == "sr":  # SMOKE's roi is smaller than the shipped SR patch
        extra += SMOKE_SR
    ldm = shipped.latent.type == "pretrained" and not shipped.latent.cache
    own_codec = any(o.startswith("latent.path=") for o in args.overrides)  # --set latent.path=a trained VAE
    if ldm:
        if not own_codec:  # vae_ldm: a random VAE of vae.yaml's size
            extra.append(f"latent.path={bench_vae_codec(work / 'vae_codec', shipped.data.modalities, args.smoke)}")
        extra += SMOKE_LDM if args.smoke else []
        if args.latent_cache:  # README's LDM steps: the latents encoded once (below), the loop reads them
            extra.append(f"latent.cache={work / 'latent_cache'}")
            # encoded afresh each run: one left in --work by another codec or case count is stale, and the
            # loop would refuse it
            shutil.rmtree(work / "latent_cache", ignore_errors=True)
    if shipped.conditioning.text.enabled:
        extra += [f"conditioning.text.encoder={bench_text_encoder(work / 'text_encoder', args.smoke)}",
                  *(SMOKE_TEXT if args.smoke else [])]
    cfg = load_config(args.config, [*overrides, *extra, *args.overrides])
    if cfg.stage not in STAGES:
        raise SystemExit(f"loop_bench times the stages {sorted(STAGES)}; {args.config} is stage {cfg.stage}")
    train_fn = STAGES[cfg.stage]()[0]
    if not (work / "manifest.json").is_file():
        write_synthetic_set("phantom", work / "data", args.cases, shape=cfg.data.roi, seed=0, tumour_fraction=1.0)
        write_manifest(build_brats_manifest(work / "data", num_folds=2, seed=0), work / "manifest.json")
    if cfg.latent.cache and not (Path(cfg.latent.cache) / "cache.json").is_file():
        encode_latents(cfg, args.config, [*overrides, *extra, *args.overrides], device)

    # 1. the loop, as `medidiff train` runs it (a profiled window changes only those few steps,
    # which the median of the log windows leaves out when the window is short)
    profiled: dict[str, Any] = {}
    exclude = None
    if args.profile_steps:
        start = max(1, (args.steps - args.profile_steps) // 2)
        loop_module._train_step = profiling_steps(loop_module._train_step, start, args.profile_steps, device, profiled)
        exclude = (start, start + args.profile_steps - 1)
    seen_loader: dict[str, Any] = {}
    loop_module._loader = capturing_loader(seen_loader)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    try:
        train_fn(cfg, overwrite=True, progress=False)
    finally:
        loop_module._train_step, loop_module._loader = ORIGINAL_STEP, ORIGINAL_LOADER
    loop_seconds = time.perf_counter() - t0
    # the card's peak: does a larger micro-batch fit (issue 15: a micro-batch that fills the card)?
    peak_gib = lambda: round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None  # noqa: E731
    loop_peak = peak_gib()
    # 4. the loop's loader alone, now: the capture holds the loop's run (engine, model, optimizer
    # states), which must be freed before the net alone is timed and its memory peak read
    # (none with train.data_on_device: the items sit on the device and a second copy would double them)
    loader = loader_alone(seen_loader["args"], args.loader_batches, device) \
        if args.loader_batches and "args" in seen_loader and not seen_loader["held"] else None
    held = bool(seen_loader.get("held"))
    seen_loader.clear()
    gc.collect()  # the run's engine may sit in reference cycles
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = loop_rate(run_dir_of(cfg), args.skip_windows, exclude)
    per_step = cfg.train.micro_batch * cfg.train.grad_accum
    loop_vol_s = rate["steps_per_s"] * per_step

    # 2. the same net alone, at the loop's batch and latent shape
    mode = args.net_mode or {"bf16": "bf16", "fp32": "fp32"}.get(cfg.train.precision, "autocast")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    cond: dict[str, torch.Tensor] = {}
    if cfg.stage == "vae":  # the whole volume through encoder and decoder
        from medidiff.latents.vae_task import VAETrainModule

        latent = (len(cfg.data.modalities), *cfg.data.roi)
        net_cfg = None
        model = VAEAsNet(VAETrainModule(cfg.vae, latent[0])).to(device)
    else:
        codec = build_codec_for(cfg)
        if cfg.stage == "sr":  # a training patch of the latent, conditioned on the encoded low-res volume
            from medidiff.cascade.sr_task import latent_patch, resolve_sr_net_config

            net_cfg = resolve_sr_net_config(cfg, codec)
            latent = (codec.latent_channels, *latent_patch(cfg.cascade.patch_size, codec))
        else:
            net_cfg = resolve_net_config(cfg, codec)
            channels = len(cfg.data.modalities) + (3 if cfg.conditioning.generate_labels else 0)
            latent = codec.latent_shape((channels, *[r // cfg.data.downsample for r in cfg.data.roi]))
        model = build_net(net_cfg).to(device)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    eager = model  # FLOPs are counted on the eager module
    if cfg.train.compile:
        model = torch.compile(model, mode=None if cfg.train.compile_mode == "default" else cfg.train.compile_mode)
    x = torch.randn(cfg.train.micro_batch, *latent, device=device, dtype=dtype)
    # a mask-conditioned net (configs/mask_flow.yaml) takes the encoded masks on the latent grid, the
    # SR net the encoded low-res volume there and its augmentation level as a scalar, a text net a
    # padded prompt's tokens
    if net_cfg is not None and net_cfg.cond_channels:
        cond["cond_image"] = torch.randn(x.shape[0], net_cfg.cond_channels, *x.shape[2:], device=device, dtype=x.dtype)
    if net_cfg is not None and net_cfg.num_scalars:
        cond["scalars"] = torch.rand(x.shape[0], net_cfg.num_scalars, device=device)
    if net_cfg is not None and net_cfg.cross_attention_dim:
        tokens = cfg.conditioning.text.max_length or 77
        cond["context"] = torch.randn(x.shape[0], tokens, net_cfg.cross_attention_dim, device=device, dtype=x.dtype)
        cond["context_mask"] = (torch.arange(tokens, device=device) < min(24, tokens)).expand(x.shape[0], tokens)
    step = unet_bench.Step(model, x, "fp32" if mode == "fp32" else mode, device, cond)
    timer = unet_bench.Timer(device)
    for _ in range(3):
        step()
    net_step_s = statistics.median(timer(step, args.net_steps)) / 1e3  # the timer gives milliseconds
    net_peak = peak_gib()
    net_vol_s = cfg.train.micro_batch / net_step_s
    flops = unet_bench.count_flops(eager, x, mode, device, cond or None)

    def mfu(peak: float) -> float:
        return flops / net_step_s / (peak * 1e12)

    del step, model, eager
    monai: Any = None
    if args.monai and net_cfg is None:
        monai = "the VAE is MONAI's AutoencoderKL (medidiff.latents.vae.build_autoencoder): the net alone is MONAI's"
    elif args.monai:
        monai = monai_alone(net_cfg, x.float(), args.net_steps, device, {k: v for k, v in cond.items()})

    loop_step_s = 1.0 / rate["steps_per_s"]
    record = {
        "benchmark": "loop_bench", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": str(args.config), "overrides": args.overrides, "smoke": args.smoke,
        "stage": cfg.stage, "volume": "training patch" if cfg.stage == "sr" else "volume",
        "text_encoder": "random, CLIP-L text-tower size" if cfg.conditioning.text.enabled and not args.smoke else None,
        "vae_codec": ((cfg.latent.path if own_codec else "random, configs/vae.yaml's architecture") if ldm else None),
        "latent_cache": bool(cfg.latent.cache),
        "micro_batch": cfg.train.micro_batch, "grad_accum": cfg.train.grad_accum, "latent_shape": list(latent),
        "precision": cfg.train.precision, "compile": cfg.train.compile, "net_mode": mode,
        "loop": {**rate, "vol_per_s": loop_vol_s, "seconds_in_all": round(loop_seconds, 1), "peak_gib": loop_peak},
        "net_alone": {"step_s_median": net_step_s, "vol_per_s": net_vol_s, "steps": args.net_steps, "peak_gib": net_peak},
        "loop_vs_net": loop_vol_s / net_vol_s,
        "loader_alone": loader,
        "loader_vs_net": loader["vol_per_s"] / net_vol_s if loader else None,
        "data_on_device": held,  # the set held on the device, no loader a step: loader_alone is not timed
        "flops_per_step": flops,
        "mfu_net": {"vs_datasheet": mfu(args.peak_tflops), "vs_measured_matmul": mfu(args.measured_peak_tflops)},
        # the loop does the same FLOPs per optimizer step (plus the codec and the EMA, not counted)
        "mfu_loop": {"vs_datasheet": flops * per_step / cfg.train.micro_batch / loop_step_s / (args.peak_tflops * 1e12),
                     "vs_measured_matmul": flops * per_step / cfg.train.micro_batch / loop_step_s
                     / (args.measured_peak_tflops * 1e12)},
        "peaks_tflops": {"datasheet": args.peak_tflops, "measured_matmul": args.measured_peak_tflops},
        "profile": profiled or None,
        "monai_alone": monai,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(json.dumps({k: record[k] for k in ("loop", "net_alone", "loop_vs_net", "loader_alone", "loader_vs_net",
                                            "mfu_loop")}, indent=2))
    return 0


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
