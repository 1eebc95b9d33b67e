"""The DeepSpeed boundary: the only module in medidiff that imports DeepSpeed.

``train.deepspeed: none`` builds the plain-PyTorch engine of :mod:`~medidiff.training.torch_engine`
instead (fastest on one GPU); the helpers here (stage, checkpoints, EMA parameters) serve both.

It sets up the process group (NCCL on GPUs, gloo on CPU), builds the engine from a DeepSpeed JSON
whose "auto" fields are filled from :class:`~medidiff.training.config.TrainConfig`, and wraps
checkpoint save/load and ZeRO-3 parameter gathering. Frozen modules (codec, text encoder,
segmenter) never enter the engine: callers keep them outside and pass only the trained network.

Launch: ``torchrun --nproc_per_node N -m medidiff train ...`` or the ``deepspeed`` launcher set
RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT; ``srun python -m medidiff train`` (one task
per GPU) is read from SLURM's variables (:mod:`medidiff.training.launch`); a plain
``medidiff train`` is one process (world size 1) on one GPU or on the CPU.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medidiff.config import ConfigError
from medidiff.errors import MedidiffError
from medidiff.training.config import TrainConfig
from medidiff.training.launch import adopt_slurm_env

log = logging.getLogger(__name__)

__all__ = [
    "exit_distributed",
    "sanitize_cuda_arch_list",
    "resolve_device",
    "DistInfo",
    "setup_distributed",
    "builtin_deepspeed_config",
    "resolve_deepspeed_config",
    "build_engine",
    "zero_stage",
    "engine_name",
    "NO_DEEPSPEED",
    "to_universal",
    "full_parameters",
    "barrier",
    "trained_parameters",
    "master_pieces",
    "any_rank",
    "verify_checkpoint_pickles",
]

NO_DEEPSPEED = "none"  # train.deepspeed value of the plain-PyTorch engine (torch_engine.py)

_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([a-zA-Z]*)(\+PTX)?$")


def sanitize_cuda_arch_list(env: dict[str, str] | os._Environ = os.environ) -> str | None:
    """Make ``TORCH_CUDA_ARCH_LIST`` parseable by DeepSpeed's op builder.

    DeepSpeed runs ``int()`` on the minor version of each entry, so arch-specific suffixes such
    as ``9.0a`` (Hopper wgmma) raise ``ValueError: invalid literal for int() ... '0a'`` when it
    JIT-builds an op (FusedAdam, CPUAdam...). We drop the letter suffix (``9.0a`` -> ``9.0``),
    which still targets the same GPU, and log that we did. Returns the new value, or None if
    nothing changed.
    """
    value = env.get("TORCH_CUDA_ARCH_LIST")
    if not value:
        return None
    parts = [p for p in re.split(r"[;\s]+", value.strip()) if p]
    fixed = []
    for part in parts:
        m = _ARCH_RE.match(part)
        if m and m.group(3):
            part = f"{m.group(1)}.{m.group(2)}{m.group(4) or ''}"
        fixed.append(part)
    new = " ".join(dict.fromkeys(fixed))
    if new == value:
        return None
    env["TORCH_CUDA_ARCH_LIST"] = new
    log.warning(
        "TORCH_CUDA_ARCH_LIST=%r rewritten to %r: DeepSpeed's op builder cannot parse "
        "arch-specific suffixes", value, new
    )
    return new


def resolve_device(requested: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' on a CPU-only machine is a clear error."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise MedidiffError(
            f"train.device is 'cuda' but no CUDA device is available (torch {torch.__version__}, "
            f"{build}): run on a GPU node, or use --set train.device=cpu"
        )
    if requested == "cuda":
        adopt_slurm_env()
        local_rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if count == 1:
            return torch.device("cuda", 0)  # e.g. srun --gpus-per-task=1: each task sees its own GPU only
        if local_rank >= count:
            raise MedidiffError(
                f"LOCAL_RANK={local_rank} but this node shows {count} GPUs (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): start at most {count} processes per node"
            )
        return torch.device("cuda", local_rank)
    return torch.device(requested)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # CPU (gloo) group for small host-side agreements (stop flags): a collective on it does not
    # wait for the GPU's queued work, so ranks can agree every step without stalling kernel launch
    control: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _skip_deepspeed_shm_op() -> None:
    """On CPU, DeepSpeed's comm backend JIT-builds a shared-memory allreduce op when it starts: C++ compiled at
    run time (a compiler needed on the machine; ~40-60 s on 2 cores the first time). medidiff's CPU runs
    (tests, the demo, small jobs) do their few collectives over gloo, so the op is marked unavailable, as
    DeepSpeed itself does off Linux (deepspeed.comm.torch.build_shm_op then returns None).
    ``__compatible_ops__`` is DeepSpeed's own table of buildable ops, kept in its module."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _own_store() -> torch.distributed.TCPStore:
    """A rendezvous store for a process that no launcher started, on a port the OS picks and the
    store keeps bound. Choosing a free port first and binding it later raced: runs started side by
    side (quality_scale's six trainings) took the same port, and one died with EADDRINUSE."""
    return torch.distributed.TCPStore("127.0.0.1", 0, 1, is_master=True)


def setup_distributed(device: torch.device, *, deepspeed: bool = True) -> DistInfo:
    """Initialise the process group once (a single process gets world size 1).

    Without ``deepspeed`` (the plain engine) DeepSpeed is not imported, and one process needs no
    process group at all: DeepSpeed's import and, on CPU, its communication op build cost a
    single-process run seconds at start."""
    if deepspeed and device.type == "cpu":
        # Must be set before DeepSpeed is imported: it picks its accelerator at import time.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    elif deepspeed:
        sanitize_cuda_arch_list()
    adopt_slurm_env()  # srun without torchrun: SLURM's variables name the rank and world size
    grouped = deepspeed or int(os.environ.get("WORLD_SIZE", "1")) > 1
    store = None
    if grouped:
        for key, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
            os.environ.setdefault(key, default)
        alone = os.environ["WORLD_SIZE"] == "1" and "MASTER_PORT" not in os.environ
        if alone and not torch.distributed.is_initialized():
            store = _own_store()  # one process on its own: WORLD_SIZE is 1 here (a launcher sets the port)
            os.environ["MASTER_PORT"] = str(store.port)  # DeepSpeed checks the variable is there
    if deepspeed:
        import deepspeed as ds

        if device.type == "cpu":
            _skip_deepspeed_shm_op()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if grouped and not torch.distributed.is_initialized():
        by_store = {} if store is None else {"store": store, "rank": 0, "world_size": 1}
        if device.type == "cuda":
            # bind NCCL to this rank's GPU up front (otherwise it guesses the device per collective)
            torch.distributed.init_process_group("nccl", device_id=device, **by_store)
        elif store is not None or not deepspeed:
            torch.distributed.init_process_group("gloo", **by_store)
        if deepspeed:  # adopts a group made above; otherwise makes its own from the environment
            ds.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    world_size = torch.distributed.get_world_size() if grouped else 1
    control = None
    if world_size > 1:
        # every rank creates it, in the same order (new_group is itself a collective)
        control = torch.distributed.new_group(backend="gloo") if device.type == "cuda" else torch.distributed.group.WORLD
    return DistInfo(
        rank=torch.distributed.get_rank() if grouped else 0,
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        device=device,
        control=control,
    )


def any_rank(flags: list[bool], dist: DistInfo) -> list[bool]:
    """Each flag True on every rank if it is True on any (ranks must agree to stop, or the others
    wait in a collective forever). One all_reduce on the CPU control group."""
    if dist.world_size == 1 or dist.control is None:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=dist.control)
    return [bool(v) for v in t.tolist()]


def _destroy_process_group() -> None:
    """At exit: every rank meets, then tears its groups down. A rank that closed its gloo
    connections while its peer was still in its own teardown made the peer abort ("terminate called
    without an active exception", rank 1 of the 2-rank CPU ZeRO-3 test, about 1 run in 6 on busy
    cores): the barrier lines the teardowns up. Best effort: a peer that is already gone must not
    turn a clean exit into an error."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if _FINISHED_CLEANLY and torch.distributed.get_world_size() > 1:
            # only after a loop that ended on every rank (a failed rank must exit, not wait for peers
            # that are still training), and never for long
            with contextlib.suppress(Exception):
                torch.distributed.barrier(async_op=True).wait(timeout=datetime.timedelta(seconds=60))
        torch.distributed.destroy_process_group()


_FINISHED_CLEANLY = False


def exit_distributed(code: int) -> int:
    """End a multi-rank process: tear the groups down (:func:`_destroy_process_group`), flush, and
    leave with ``os._exit(code)``; ``code`` unchanged in a single process (nothing is torn down).

    Why not a normal interpreter exit: process-group objects that other modules still hold (DeepSpeed
    keeps its groups) are destroyed only during interpreter finalisation, when the peer rank may be
    gone, and one of their threads then aborts the process ("terminate called without an active
    exception", exit -6 after a complete run: rank 1 of the 2-rank CPU ZeRO-3 test, once more in a
    clean-clone CI run on 2026-11-30 despite the barrier of _destroy_process_group). Everything a run writes is closed by then
    (the loop closes its logs and loaders in its ``finally``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return code
    if torch.distributed.get_world_size() <= 1:
        return code
    _destroy_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def finished_cleanly() -> None:
    """Called by the loop once every rank has passed its final barrier: the exit may then line the
    ranks' teardowns up (:func:`_destroy_process_group`)."""
    global _FINISHED_CLEANLY
    _FINISHED_CLEANLY = True


def _fill(ds: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Fill an "auto" (or absent) DeepSpeed field; an explicit conflicting value is an error."""
    current = ds.get(key, "auto")
    if current == "auto":
        ds[key] = value
    elif current != value:
        raise ConfigError(
            f"{source}: {key}={current!r} conflicts with the train section ({value!r}); "
            f'set it to "auto" in the JSON and choose it with --set train...'
        )


def builtin_deepspeed_config(name: str) -> dict[str, Any]:
    """The built-in DeepSpeed configs ``zero0``..``zero3`` and ``zero2_offload``.

    They equal configs/deepspeed/<name>.json (a test keeps them in sync); built in so that
    ``medidiff train`` works from any folder. Copy a JSON from configs/deepspeed/ to tune more.
    """
    m = re.fullmatch(r"zero([0-3])(_offload)?", name)
    if not m or (m.group(2) and m.group(1) != "2"):
        raise ConfigError(f"train.deepspeed: {name!r} is neither none (plain PyTorch), a built-in (zero0, zero1, zero2, "
                          "zero3, zero2_offload) nor a path to a .json file")
    stage = int(m.group(1))
    zero: dict[str, Any] = {"stage": stage}
    if m.group(2):
        zero.update({"offload_optimizer": {"device": "cpu", "pin_memory": True}, "contiguous_gradients": True})
    elif stage >= 2:
        zero.update({"overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 50000000})
    if stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": 50000000,
                     "stage3_param_persistence_threshold": 100000})
    return {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto", "zero_optimization": zero, "bf16": {"enabled": "auto"},
            "steps_per_print": 1000000000, "wall_clock_breakdown": False}


def resolve_deepspeed_config(cfg: TrainConfig, world_size: int | None) -> dict[str, Any]:
    """Read ``cfg.deepspeed`` (a built-in name or a JSON path) and fill its "auto" fields.

    ``world_size`` None (not known yet: the CLI's early check, before any process group) leaves an explicit
    ``train_batch_size`` unchecked; :func:`build_engine` checks it with the real one."""
    if not cfg.deepspeed.endswith(".json"):
        ds, src = builtin_deepspeed_config(cfg.deepspeed), f"train.deepspeed={cfg.deepspeed}"
    else:
        path = Path(cfg.deepspeed)
        if not path.is_file():
            raise ConfigError(f"train.deepspeed: DeepSpeed config {path} not found (built-ins: zero0..zero3, "
                              "zero2_offload; examples in configs/deepspeed/)")
        try:
            ds = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(ds, dict):
            raise ConfigError(f"{path}: top level must be an object")
        src = str(path)
    _fill(ds, "train_micro_batch_size_per_gpu", cfg.micro_batch, src)
    _fill(ds, "gradient_accumulation_steps", cfg.grad_accum, src)
    _fill(ds, "gradient_clipping", float(cfg.grad_clip), src)
    if "train_batch_size" in ds and world_size is not None:
        _fill(ds, "train_batch_size", cfg.micro_batch * cfg.grad_accum * world_size, src)
    bf16 = ds.setdefault("bf16", {})
    _fill(bf16, "enabled", cfg.precision == "bf16", f"{src}: bf16")
    fp16 = ds.setdefault("fp16", {})
    _fill(fp16, "enabled", cfg.precision == "fp16", f"{src}: fp16")
    if cfg.precision == "fp16":
        # DeepSpeed's dynamic loss scaling (loss_scale 0): fp16's 5 exponent bits underflow small
        # gradients without it. A step whose gradients overflow is skipped and the scale halved.
        for key, value in (("loss_scale", 0), ("initial_scale_power", 16), ("loss_scale_window", 1000),
                           ("hysteresis", 2), ("min_loss_scale", 1)):
            fp16.setdefault(key, value)
    stage = int(ds.get("zero_optimization", {}).get("stage", 0))
    if cfg.precision == "bf16" and stage >= 1:
        # Accumulate gradients in fp32: bf16 accumulation diverges (DeepSpeed #2768).
        ds.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
    elif cfg.precision in ("bf16", "fp16") and cfg.grad_accum > 1 and stage == 0:
        # DeepSpeed's stage 0 with half-precision weights accumulates in that precision.
        raise ConfigError(
            f"{src}: ZeRO stage 0 with precision {cfg.precision} accumulates gradients in {cfg.precision}, which "
            f"diverges with grad_accum={cfg.grad_accum} (DeepSpeed #2768): use zero1 or higher, or precision "
            f"autocast-bf16"
        )
    graphs = cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune")
    if graphs and cfg.grad_accum > 1 and stage <= 1:
        # ZeRO-0 sums a window's gradients in .grad, which the window's first backward leaves pointing at
        # CUDA-graph memory: the next micro-batch's replay overwrites it and the step stops ("accessing tensor
        # output of CUDAGraphs that has been overwritten"; fp32, grad_accum 2 on one H200,
        # tests/training/test_compiled_resume_gpu.py; ZeRO-2 and the plain engine passed). DeepSpeed drops the
        # tensors after each step (grad = None), so medidiff cannot keep gradients of its own there as the
        # plain engine does. ZeRO-1 keeps .grad across micro-batches too: fp32/fp16 in its ZeRO optimizer, and
        # bf16 in its BF16_Optimizer (which zeroes .grad in place, keeping the tensor the graph owns; read from
        # DeepSpeed 0.19's code, not run on a GPU).
        raise ConfigError(
            f"{src}: ZeRO stage {stage} with precision {cfg.precision}, grad_accum={cfg.grad_accum} and CUDA graphs "
            f"(train.compile_mode {cfg.compile_mode}) overwrites the summed gradients between micro-batches: use "
            "train.deepspeed none (medidiff's engine keeps its own gradient sums), zero2, or compile_mode default"
        )
    if "optimizer" in ds or "scheduler" in ds:
        raise ConfigError(
            f"{src}: remove 'optimizer'/'scheduler': medidiff builds AdamW and the warm-up/cosine "
            "schedule from the train section"
        )
    # We pass torch's AdamW: no DeepSpeed op has to be JIT-built, also with CPU offload.
    ds["zero_allow_untested_optimizer"] = True
    ds["zero_force_ds_cpu_optimizer"] = False
    ds.setdefault("steps_per_print", 10**9)
    return ds


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up, then cosine decay, a constant rate, or wsd (constant, then a linear decay over the last
    ``cfg.decay_fraction`` of ``cfg.max_steps``), as a factor of ``cfg.lr``; both decays end at ``cfg.min_lr_ratio``."""
    import math

    # wsd's decay runs from 1 at decay_start to min_lr_ratio at max_steps: two steps at least, so one is below lr
    # (a small fraction of a short run would round to none), and never inside the warm-up (a warm-up longer than
    # the stable part shortens the decay)
    decay_start = max(cfg.warmup_steps, cfg.max_steps - max(2, round(cfg.decay_fraction * cfg.max_steps)))

    def fn(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        if cfg.lr_schedule == "wsd":
            if step < decay_start:
                return 1.0
            progress = min(1.0, (step - decay_start) / max(1, cfg.max_steps - decay_start))
            return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def build_engine(model: torch.nn.Module, cfg: TrainConfig, dist: DistInfo) -> Any:
    """Wrap ``model`` (already on ``dist.device``) in a DeepSpeed engine with AdamW + schedule, or
    with ``train.deepspeed: none`` in the plain-PyTorch :class:`~medidiff.training.torch_engine.TorchEngine`."""
    if cfg.deepspeed == NO_DEEPSPEED:
        from medidiff.training.torch_engine import TorchEngine

        return TorchEngine(model, cfg, lr_lambda(cfg), dist.rank, dist.world_size, dist.device)
    import deepspeed

    if cfg.precision == "fp16" and dist.device.type != "cuda":
        raise ConfigError(f"train.precision fp16 needs a GPU (DeepSpeed has no fp16 training on {dist.device.type}): "
                          "use fp32 or autocast-bf16 there")
    ds = resolve_deepspeed_config(cfg, dist.world_size)
    offload = bool(ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") in ("cpu", "nvme"))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise MedidiffError("the model has no trainable parameters")
    fused = dist.device.type == "cuda" and not offload
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {})
    )
    schedule = lr_lambda(cfg)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
        config=ds,
    )
    return engine


def _is_plain(engine: Any) -> bool:
    from medidiff.training.torch_engine import TorchEngine

    return isinstance(engine, TorchEngine)


def zero_stage(engine: Any) -> int | None:
    """The engine's ZeRO stage; None for the plain-PyTorch engine (``train.deepspeed: none``)."""
    return None if _is_plain(engine) else int(engine.zero_optimization_stage())


def engine_name(stage: int | None) -> str:
    """The ``train.deepspeed`` value that gives an engine of ``stage`` (a stage from :func:`zero_stage`)."""
    return NO_DEEPSPEED if stage is None else f"zero{stage}"


@contextlib.contextmanager
def full_parameters(engine: Any, *, modify: bool = False) -> Iterator[list[torch.nn.Parameter]]:
    """The module's parameters with full values on every rank (gathered under ZeRO-3).

    Under ZeRO-3 ``module.parameters()`` are empty placeholders outside a gather; reading them
    for EMA or export without this context silently gives zeros. With ``modify=True`` changes
    made inside the context are kept (rank 0's values are re-partitioned; callers must make
    the same change on every rank).
    """
    params = list(engine.module.parameters())
    if zero_stage(engine) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=0 if modify else None):
            yield params
    else:
        yield params


@contextlib.contextmanager
def trained_parameters(engine: Any) -> Iterator[list[torch.Tensor]]:
    """The trainable parameters' full values at the optimizer's precision, in module order.

    With DeepSpeed bf16/fp16 weights the module holds rounded copies; the optimizer's fp32
    masters are what training moves (an EMA of the bf16 copies would average rounding noise).
    ``safe_get_full_fp32_param`` assembles each from its shards: one collective per parameter,
    so the training loop uses :func:`master_pieces` where it can (ZeRO-1/2) and comes here for
    ZeRO-3. Otherwise the module's own (gathered) parameters.
    """
    if _is_plain(engine):
        yield engine.fp32_parameters()
        return
    params = [p for p in engine.module.parameters() if p.requires_grad]
    if params and params[0].dtype in (torch.bfloat16, torch.float16):
        from deepspeed.utils import safe_get_full_fp32_param

        masters = _unfused_masters(engine, params) or [safe_get_full_fp32_param(p) for p in params]
        if all(m is not None for m in masters):
            yield masters  # type: ignore[misc]
            return
    with full_parameters(engine) as full:
        yield [p for p in full if p.requires_grad]


def _unfused_masters(engine: Any, params: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """ZeRO-0 with bf16/fp16 weights: DeepSpeed wraps torch's AdamW in its FP16_UnfusedOptimizer,
    whose fp32 masters (``fp32_groups``, beside ``fp16_groups``) are linked to nothing that
    ``safe_get_full_fp32_param`` reads: without this the EMA averaged the rounded weights."""
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    opt = getattr(engine, "optimizer", None)
    if not isinstance(opt, FP16_UnfusedOptimizer):
        return None
    by_id = {id(p): m for low, high in zip(opt.fp16_groups, opt.fp32_groups) for p, m in zip(low, high)}
    masters = [by_id.get(id(p)) for p in params]
    return masters if all(m is not None for m in masters) else None  # type: ignore[return-value]


def master_pieces(engine: Any) -> list[tuple[int, int, torch.Tensor]] | None:
    """This rank's pieces of the fp32 masters, where DeepSpeed keeps them apart from bf16/fp16
    module weights and partitions them over the ranks (ZeRO-1/2, its bf16 optimizer).

    Per trainable parameter (module order) with a piece on this rank: ``(index, start, view)``, the
    piece's first element in the flattened parameter and a view of it in the optimizer's partition
    (``_hp_mapping``: the link ``safe_get_full_fp32_param`` reads). Over the ranks the pieces of a
    parameter are disjoint and cover it, so an EMA of the pieces needs no communication until it
    is read (:meth:`~medidiff.training.ema.EMA.update_pieces`). None where the masters are not held
    this way (the plain engine, fp32 weights, ZeRO-3): use :func:`trained_parameters`.
    """
    if _is_plain(engine):
        return None
    params = [p for p in engine.module.parameters() if p.requires_grad]
    if not params or params[0].dtype not in (torch.bfloat16, torch.float16):
        return None
    if any(getattr(p, "ds_id", None) is not None or not hasattr(p, "_hp_mapping") for p in params):
        return None  # ZeRO-3 parameters, or an optimizer that links no masters
    pieces = []
    for i, p in enumerate(params):
        mapping = p._hp_mapping
        if mapping is None:  # no element of this parameter in this rank's partition
            continue
        address = mapping.lp_fragment_address
        pieces.append((i, int(address.start), mapping.get_hp_fragment()))
    return pieces


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def save_engine_checkpoint(engine: Any, directory: Path, tag: str) -> None:
    """The engine's save; every rank must call it (under DeepSpeed rank 0 alone would hang the others)."""
    if _is_plain(engine):
        engine.save(directory / tag)
    else:
        engine.save_checkpoint(str(directory), tag=tag, save_latest=False)


def _checkpoint_safe_globals() -> list[Any]:
    """The only non-tensor objects DeepSpeed pickles into its checkpoint files (found by
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` over ZeRO 0-3, fp32/bf16, offload):
    plain classes whose restored state is data, never code."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def verify_checkpoint_pickles(directory: Path, rank: int | None) -> None:
    """Refuse a checkpoint whose .pt files would run code when DeepSpeed unpickles them.

    DeepSpeed 0.19 reads its files with ``torch.load(weights_only=False)``, so a planted
    ``mp_rank_00_model_states.pt`` could execute anything. Each file this rank will read is first
    opened with torch's restricted unpickler (``weights_only=True``: tensors, containers and the
    allow-listed DeepSpeed classes; ``mmap`` so tensor data is not read), which refuses any
    other global before constructing it. Only then does DeepSpeed load them. ``rank`` None: every
    rank's files (the universal conversion reads them all).
    """
    def read_by_this_rank(name: str) -> bool:  # bf16_zero_pp_rank_3_mp_rank_00_optim_states.pt...
        m = re.search(r"zero_pp_rank_(\d+)_", name)
        return rank is None or m is None or int(m.group(1)) == rank

    files = [f for f in sorted(directory.rglob("*.pt")) if read_by_this_rank(f.name)]
    for f in files:
        try:
            with torch.serialization.safe_globals(_checkpoint_safe_globals()):
                torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # UnpicklingError for foreign globals; others for broken files
            first = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln), str(exc).splitlines()[0])
            raise MedidiffError(
                f"{f}: refused to load: it holds more than tensors and DeepSpeed's state ({first[:200]}); "
                "medidiff never writes such a file, so it was altered or comes from elsewhere: do not resume from it"
            ) from None


def to_universal(source: Path, out: Path) -> None:
    """Convert the ZeRO checkpoint folder ``source`` into DeepSpeed's universal form at ``out``.

    ZeRO-1/2/3 cut the optimizer state (and ZeRO-3 the weights) into one shard per rank, and
    DeepSpeed 0.19 loads shards only into the world size that wrote them. Its universal checkpoint
    holds each parameter's fp32 master and Adam moments whole (``zero/<name>/fp32.pt``...), so an
    engine of any world size cuts its own partition from it (``checkpoint.load_universal``).
    The converter runs in a child process: it forks worker pools, which a process that holds a
    CUDA context and NCCL communicators must not do, and its memory is returned when it exits.
    Every source file is first opened with the restricted unpickler (the converter itself reads
    them with ``weights_only=False``). ``--inject_missing_state`` supplies the version record that
    only Megatron-style models write; a plain model needs nothing else.
    """
    verify_checkpoint_pickles(source, None)
    shutil.rmtree(out, ignore_errors=True)
    workers = str(max(1, min(4, os.cpu_count() or 1)))
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(source),
           "--output_folder", str(out), "--num_extract_workers", workers, "--num_merge_workers", "1",
           "--inject_missing_state"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)  # its slices and temporary folder: a full disk is a likely cause
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "rror" in ln), lines[-1] if lines else f"exit {proc.returncode}")
        raise MedidiffError(f"{source}: DeepSpeed's universal conversion failed ({reason[:300]}); "
                            "resume with the process count that wrote this checkpoint (state.json: world_size)")


def load_engine_checkpoint(engine: Any, directory: Path, tag: str, rank: int = 0, *, universal: bool = False) -> None:
    """DeepSpeed's load of ``directory/tag``, after :func:`verify_checkpoint_pickles`; the plain
    engine reads its safetensors + JSON (nothing pickled). ``universal``: ``directory/tag`` was
    written by :func:`to_universal`, and each rank cuts its partition from it."""
    if _is_plain(engine):
        engine.load(directory / tag)
        return
    verify_checkpoint_pickles(directory / tag, rank)
    # the engine reads this flag at load time; set for this load only, so that later loads (none
    # today) are not misread
    previous = engine._config.load_universal_checkpoint
    engine._config.load_universal_checkpoint = universal
    try:
        path, _ = engine.load_checkpoint(
            str(directory), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
        )
    finally:
        engine._config.load_universal_checkpoint = previous
    if path is None:
        raise MedidiffError(f"{directory / tag}: DeepSpeed could not load this checkpoint")
    if universal:
        _after_universal_load(engine, directory / tag)


def _after_universal_load(engine: Any, folder: Path) -> None:
    """What DeepSpeed's universal load leaves undone for medidiff's engines.

    * Module buffers: it restores parameters from the universal slices and skips the module's
      state dict, so persistent buffers (e.g. the VAE trainer's micro-step counter, which starts
      the GAN terms) would restart at their initial values; they are read from the copied
      ``*model_states.pt`` (checked by the restricted unpickler before the load).
    * Adam's ``step``: written as a CPU tensor by the converter and put into the optimizer state as
      it is; torch's fused (and capturable) AdamW wants it on the parameter's device.
    """
    files = sorted(folder.glob("*model_states.pt"))
    if files:
        with torch.serialization.safe_globals(_checkpoint_safe_globals()):
            saved = torch.load(files[0], map_location="cpu", weights_only=True).get("module") or {}
        module_buffers = dict(engine.module.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                if name in module_buffers and torch.is_tensor(value) and value.shape == module_buffers[name].shape:
                    module_buffers[name].copy_(value)
    optimizer = getattr(engine, "basic_optimizer", None)
    for group in getattr(optimizer, "param_groups", []):
        if not (group.get("fused") or group.get("capturable")):
            continue  # the plain implementations keep ``step`` on the CPU
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if torch.is_tensor(step) and step.device != p.device:
                state["step"] = step.to(device=p.device, dtype=torch.float32)
