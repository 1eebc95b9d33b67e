"""The one training loop (VAE, diffusion and super-resolution stages all train through it).

:func:`fit` reads in four parts: setup (:func:`_setup`, :func:`_resume`, :func:`_loader`), one
optimizer step (:func:`_train_step`), the periodic work (:func:`_periodic`: log line,
validation, previews) and stopping (:func:`_stop_now`, :func:`_checkpoint`). Its guarantees, and
how each is kept:

Exact resume.

* the data order is a seeded permutation per epoch that can start mid-epoch
  (:class:`~medidiff.training.sampler.ResumableSampler`), and the position is checkpointed;
* every micro-step reseeds torch's global RNG and hands the loss a generator, both from
  ``(seed, step, micro, rank)``: noise, timesteps, dropout and conditioning dropout do not
  depend on what ran before, so nothing random has to be restored;
* model, optimizer and LR schedule come back from the engine's checkpoint (DeepSpeed's, or the
  plain engine's safetensors + JSON with ``train.deepspeed: none``), EMA from its own fp32
  safetensors file;
* metrics.jsonl is cut back to the resumed step.

On CPU with fp32 a resumed run is bitwise equal to an uninterrupted one (tested). On GPUs,
non-deterministic kernels (atomics in conv backward, NCCL reduction order) make it equal only
within floating-point tolerance.

The same gradients at every ZeRO stage. The loss function gets the DeepSpeed engine and calls
it once per micro-batch: the engine's forward is where ZeRO learns which micro-step closes an
accumulation window (called past it, ZeRO-3 applied only the last micro-batch's gradient).
ZeRO-3 with ``grad_accum 2`` equals ZeRO-0 bitwise in one CPU process (tested).

Pre-emption: a signal ends the job with a complete checkpoint. SIGTERM or SIGUSR1 (SLURM before
the time limit or on pre-emption, torchrun when it stops) sets a flag; loader workers ignore
both (they were killed first and took the job down), and the handlers are installed before
the workers start. The ranks agree every step, with one all_reduce of two flags on a CPU
control group that does not wait for GPU work, so all stop at the same step, within one step
of the signal, whatever ``log_every`` is; a stop skips validation and previews and writes the
checkpoint. A checkpoint counts once rank 0 has written COMPLETE after every rank's shards
(:mod:`~medidiff.training.checkpoint`), so a SIGKILL during the save leaves the previous one.

Requeue. configs/slurm/train.sbatch traps the signal in the batch shell, forwards SIGTERM to
the training step, waits for it, then calls ``scontrol requeue``; the requeued job runs the same
command with ``--resume``. The run folder's lock (:mod:`~medidiff.training.run_dir`) records
the SLURM job id, so the requeued job takes it over on any node, while a second job is refused.

Resume on another GPU count (a requeued job that got fewer or more nodes): yes, with the same
engine (``train.deepspeed``). The plain engine and ZeRO-0 hold the whole optimizer state in one
file. ZeRO-1/2/3 shards are cut per rank and DeepSpeed 0.19 loads them only into the world size
that wrote them, so rank 0 first converts the checkpoint into DeepSpeed's universal form (every
parameter's fp32 master and Adam moments whole; :func:`~medidiff.training.engine.to_universal`),
each rank cuts its own partition from it, and the converted copy is deleted. :func:`_resume`
compares world size, engine and config with the checkpoint's state.json before loading anything.
The data position converts: rank r's batch b holds items ``k * world_size + r`` of the epoch's
permutation, so after ``position`` batches per rank the permutation's first
``position * micro_batch * world_size`` items are used whatever the world size, and the run
continues after them. The global batch is ``micro_batch * grad_accum * world_size``: another
world size changes it (and with it the gradient noise), which the warning on resume says.

Safe loading: DeepSpeed's pickled shards are opened with torch's restricted unpickler before
DeepSpeed loads them (:func:`~medidiff.training.engine.verify_checkpoint_pickles`); weights and
EMA are safetensors, state is JSON.

Previews and validation never run through the ZeRO engine: they use a plain copy of the model
holding the EMA weights (every rank has them), so rank 0 previews alone and each rank validates
its own shard of the held-out set.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.profiler import record_function
from torch.utils.data import DataLoader, Dataset

from medidiff.config import ConfigError, config_changes, flatten
from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.config import LogConfig, TrainConfig
from medidiff.training.data_wait import DataWait
from medidiff.training.device_data import DeviceBatches, NotHeld, refuse_random_items
from medidiff.training.ema import EMA
from medidiff.training.engine import (
    NO_DEEPSPEED,
    DistInfo,
    any_rank,
    barrier,
    build_engine,
    engine_name,
    finished_cleanly,
    full_parameters,
    trained_parameters,
    master_pieces,
    load_engine_checkpoint,
    to_universal,
    resolve_device,
    save_engine_checkpoint,
    setup_distributed,
    zero_stage,
)
from medidiff.training.run_dir import claim_run_dir
from medidiff.training.run_log import RunLog
from medidiff.training.tracking import check_trackers
from medidiff.training.sampler import ResumableSampler, SeededItems, StreamSampler, derive_seed

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any, torch.Generator], "tuple[torch.Tensor, dict[str, float]]"]
# val_fn(module, rank, world_size) -> (metric sums over this rank's shard, count they divide by)
ValFn = Callable[[torch.nn.Module, int, int], "tuple[dict[str, float], int]"]
# preview_fn(step, module, out_dir) -> the file it wrote (handed to the trackers as an artifact) or None
PreviewFn = Callable[[int, torch.nn.Module, Path], "Path | None"]

__all__ = ["FitResult", "LossFn", "PreviewFn", "ValFn", "fit", "move_to", "shard"]


@dataclass
class FitResult:
    run_dir: Path
    final_step: int
    last_checkpoint: Path | None
    losses: list[float] = field(default_factory=list)
    preempted: bool = False
    time_limited: bool = False  # stopped by train.max_minutes (checkpoint written)


def move_to(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors in a batch (dict/list/tuple) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Items ``rank::world_size`` of ``dataset`` (a rank's part of a held-out set)."""
    from torch.utils.data import Subset

    return dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))  # type: ignore[arg-type]


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore the stop signals.

    torchrun and SLURM signal the whole process group; a worker that died of SIGTERM made the main
    process raise "DataLoader worker ... killed by signal: Terminated" before it could checkpoint.
    Ignoring workers still end with the main process (torch's workers watch their parent).
    """
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


class _Preemption:
    """SIGTERM/SIGUSR1 (SLURM and torchrun send them before killing a job) -> checkpoint, stop.

    Entered before the loader's workers start, so that no window exists in which a signal kills
    the job without a checkpoint.
    """

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Preemption:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a notebook worker)
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def add_logs(sums: dict[str, Any], logs: dict[str, Any], scale: float) -> None:
    """Add ``scale`` x each of a step's ``logs`` (floats or device scalars, read at log steps only)
    to the window's running ``sums``, in float32: a bf16 running sum of 50 small losses drifted by
    up to ~10 % (each addition rounds to the sum's 8-bit mantissa)."""
    for k, v in logs.items():
        v = v.detach().float() if isinstance(v, torch.Tensor) else v
        sums[k] = sums.get(k, 0.0) + v * scale


def _read_logs(logs: dict[str, Any], n_steps: int) -> dict[str, float]:
    """``{"loss/<k>": float}``: the mean over the window's ``n_steps`` of the per-step sums in
    ``logs`` (floats and device scalars, with one host read for the tensors)."""
    n = max(1, n_steps)
    keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    out = {f"loss/{k}": float(v) / n for k, v in logs.items() if not isinstance(v, torch.Tensor)}
    if keys:
        values = (torch.stack([logs[k].float() for k in keys]) / n).tolist()
        out.update({f"loss/{k}": v for k, v in zip(keys, values)})
    return out


def _named_params(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _all_names(engine: Any) -> list[str]:
    return [n for n, _ in engine.module.named_parameters()]


class _EvalCopy:
    """A plain (never ZeRO-partitioned) copy of the model for validation and previews.

    Taken before DeepSpeed wraps the model and loaded with the EMA weights (every rank holds
    them in fp32) and the engine's buffers when used: no forward runs through ZeRO-3's
    parameter gathering, so rank 0 can sample previews alone (under ZeRO-3 a preview through
    the engine was a collective only rank 0 entered: a deadlock on 2 ranks), and ranks can
    validate shards of different sizes.
    """

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        self.model = copy.deepcopy(model).eval()
        params = dict(self.model.named_parameters())
        self.trainable = [params[n] for n in names]  # in EMA order
        self.model.requires_grad_(False)

    def load(self, engine: Any, ema: EMA) -> torch.nn.Module:
        ema.copy_to(self.trainable)
        buffers = dict(engine.module.named_buffers())  # not partitioned by ZeRO
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])
        return self.model


@dataclass
class _Run:
    """What one call of :func:`fit` holds between its parts (setup, step, periodic work, stop)."""

    cfg: TrainConfig
    run_dir: Path
    root: Path  # run_dir/checkpoints
    seed: int
    record: dict[str, Any]
    device: torch.device
    dist: DistInfo
    engine: Any
    ema: EMA
    names: list[str]  # trainable parameter names, in EMA order
    eval_copy: _EvalCopy | None  # for validation and previews (None without them)
    batches_per_epoch: int
    run_log: RunLog
    autocast: Any
    result: FitResult
    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already consumed (per rank)
    deadline: float | None = None
    bar: Any = None
    # Per-step losses stay on the device until a log step, validation, preview or checkpoint reads
    # them all at once: reading each one (float(loss)) would stop the CPU every step until the GPU
    # catches up, so kernel launches could not overlap the GPU's work.
    pending: list[torch.Tensor] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # losses since the last log line
    step_logs: dict[str, Any] = field(default_factory=dict)
    t_last: float = 0.0
    steps_last: int = 0
    data_wait: DataWait | None = None  # the loader's iterator, timed


# ---- setup -----------------------------------------------------------------------------------


def _setup(model: torch.nn.Module, dataset: Dataset, cfg: TrainConfig, run_dir: Path, *, seed: int, resume: bool,
           record: dict[str, Any] | None, progress: bool, evaluates: bool, tracking: LogConfig | None) -> _Run:
    """Device, process group, engine and EMA, and (with ``resume``) the newest complete checkpoint."""
    device = resolve_device(cfg.device)
    dist = setup_distributed(device, deepspeed=cfg.deepspeed != NO_DEEPSPEED)
    root = ckpt.checkpoint_root(run_dir)

    resume_from = ckpt.latest_complete(root) if resume else None
    if resume and resume_from is None and dist.is_main:
        log.warning("--resume: no complete checkpoint under %s; starting from step 0", root)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest 3D conv
    model = model.to(device)
    # DeepSpeed broadcasts parameters as byte views, which needs plain contiguous weights;
    # channels_last nets keep their activations channels_last, so convs still run in NDHWC.
    # (is_contiguous() is True for a channels_last 1x1x1 kernel whose last stride is not 1.)
    for p in model.parameters():
        if p.dim() and p.stride(-1) != 1 or not p.is_contiguous():
            p.data = p.data.clone(memory_format=torch.contiguous_format)
    named = _named_params(model)
    names = [n for n, _ in named]
    ema = EMA([p for _, p in named], cfg.ema)  # before the engine: ZeRO-3 partitions in place
    eval_copy = _EvalCopy(model, names) if evaluates else None  # likewise
    engine = build_engine(model, cfg, dist)
    if cfg.compile:
        # torch.compile inside DeepSpeed (fuses norm/activation/cast passes)
        engine.compile(compile_kwargs={} if cfg.compile_mode == "default" else {"mode": cfg.compile_mode})
    elif cfg.compile_mode != "default" and dist.rank == 0:  # a mode alone compiles nothing: say so
        log.warning("train.compile_mode %s is unused: train.compile is false", cfg.compile_mode)

    sampler = ResumableSampler(len(dataset), seed=seed, rank=dist.rank, world_size=dist.world_size)
    if sampler.per_rank < cfg.micro_batch:
        raise MedidiffError(
            f"the data set has {len(dataset)} cases: fewer than micro_batch={cfg.micro_batch} per "
            f"process over {dist.world_size} process(es)"
        )
    half = {"autocast-bf16": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = torch.autocast(device.type, dtype=half) if half is not None else nullcontext()
    run = _Run(cfg=cfg, run_dir=run_dir, root=root, seed=seed, record=record or {}, device=device, dist=dist,
               engine=engine, ema=ema, names=names, eval_copy=eval_copy, batches_per_epoch=sampler.per_rank // cfg.micro_batch,
               run_log=None, autocast=autocast,  # type: ignore[arg-type]  (set below, after resume)
               result=FitResult(run_dir=run_dir, final_step=0, last_checkpoint=resume_from))
    if resume_from is not None:
        _resume(run, resume_from)
    run.result.final_step = run.steps_last = run.step
    run.run_log = RunLog(run_dir, enabled=dist.is_main, resume_step=run.step if resume_from else None,
                         tracking=tracking, params=flatten(run.record.get("config") or {}))
    if cfg.max_minutes:
        run.deadline = time.monotonic() + 60.0 * cfg.max_minutes
    if dist.is_main and progress:
        from tqdm.auto import tqdm

        run.bar = tqdm(total=cfg.max_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)
    return run


# Settings a resumed run may change: they do not alter what the checkpoint's optimizer state
# and data position mean (length of the run, bookkeeping, where files are, how fast it runs).
RESUME_MAY_CHANGE = ("name", "output_dir", "data.root", "data.manifest", "data.cache_dir", "data.num_workers",
                     "train.max_steps", "train.max_minutes", "train.log_every", "train.ckpt_every", "train.keep_last",
                     "train.preview_every", "train.val_every", "train.compile", "train.compile_mode", "train.device",
                     "train.data_on_device",
                     "train.deepspeed", "sampler.", "eval.", "log.")


def _check_resumable(run: _Run, resume_from: Path, state: dict[str, Any]) -> None:
    """Refuse, before anything is loaded, a checkpoint this run cannot continue exactly.

    Another engine (ZeRO stage, or the plain engine) would fail in DeepSpeed with a bare error:
    the files differ. Another world size is resumed (:func:`_resume`). A changed config (other
    than :data:`RESUME_MAY_CHANGE`) would continue another experiment's run.
    """
    where = resume_from / "state.json"
    ws, stage = run.dist.world_size, zero_stage(run.engine)
    saved_ws, saved_stage = state.get("world_size"), state.get("zero_stage")
    if saved_stage != stage or not isinstance(saved_ws, int) or saved_ws < 1:
        raise MedidiffError(
            f"{where}: written by {saved_ws} process(es) with train.deepspeed={engine_name(saved_stage)}, this run has "
            f"{ws} with train.deepspeed={engine_name(stage)}: resume with train.deepspeed={engine_name(saved_stage)}, "
            f"or start a new run (--overwrite or another name) whose weights come from `medidiff export` of this one"
        )
    saved_cfg, cfg = (state.get("record") or {}).get("config"), run.record.get("config")
    if isinstance(saved_cfg, dict) and isinstance(cfg, dict):
        # a setting the checkpoint does not record compares as the default the caller gives in
        # record["config_defaults"] (else every upgrade refused a resume)
        defaults = run.record.get("config_defaults") or {}
        changed = config_changes(saved_cfg, cfg, defaults, RESUME_MAY_CHANGE)
        if changed:
            before, now = flatten(defaults) | flatten(saved_cfg), flatten(cfg)
            diffs = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
            more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
            raise MedidiffError(
                f"{where}: the config differs from the one this run was trained with ({diffs}{more}); resume with "
                f"those settings (record.config in that file), or start a new run (--overwrite or another name)"
            )


def _resume(run: _Run, resume_from: Path) -> None:
    """Model, optimizer and schedule (DeepSpeed), EMA and the data position from a checkpoint."""
    state = ckpt.read_state(resume_from)
    _check_resumable(run, resume_from, state)
    saved_ws = int(state["world_size"])
    if saved_ws != run.dist.world_size and zero_stage(run.engine) not in (0, None):
        _load_resharded(run, resume_from, saved_ws)
    else:
        load_engine_checkpoint(run.engine, run.root, resume_from.name, run.dist.rank)
    run.step, run.epoch, run.position = int(state["step"]), int(state["epoch"]), int(state["position"])
    if saved_ws != run.dist.world_size:
        # Rank r's batch b holds items k*ws + r of the epoch's permutation, so after `position`
        # batches the first position*micro_batch*ws items of the permutation are used, whatever
        # the world size: continue after them (exactly when the new batch divides that count).
        used = run.position * int(state.get("micro_batch", run.cfg.micro_batch)) * saved_ws
        per_batch = run.cfg.micro_batch * run.dist.world_size
        run.position = used // per_batch
        if run.position >= run.batches_per_epoch:  # the new epoch's dropped tail is longer
            run.epoch, run.position = run.epoch + 1, 0
        if run.dist.is_main:
            accum = run.cfg.grad_accum
            log.warning("resuming on %d process(es) a %s checkpoint written by %d; "
                        "the epoch continues after its first %d items%s; the global batch is now %d volumes (was %d)",
                        run.dist.world_size, f"train.deepspeed={engine_name(zero_stage(run.engine))}", saved_ws,
                        run.position * per_batch,
                        "" if used % per_batch == 0 else f" ({used % per_batch} of them are seen again)",
                        per_batch * accum, int(state.get("micro_batch", run.cfg.micro_batch)) * saved_ws * accum)
    shadow = ckpt.load_tensors(resume_from / "ema.safetensors")
    missing = [n for n in run.names if n not in shadow]
    if missing:
        raise MedidiffError(f"{resume_from / 'ema.safetensors'}: missing EMA tensors {missing[:3]}...: "
                            "the checkpoint belongs to a different model")
    run.ema.load_state_dict({"shadow": [shadow[n] for n in run.names], "num_updates": int(state["ema_updates"])})
    if run.position >= run.batches_per_epoch:
        raise MedidiffError(
            f"{resume_from}: the saved data position (batch {run.position} of the epoch) is past an epoch of "
            f"{run.batches_per_epoch} batches: micro_batch, the number of processes or the data set changed "
            f"since this checkpoint; resume with the ones it was written with"
        )
    if run.dist.is_main:
        log.info("resumed from %s (step %d)", resume_from, run.step)


def _load_resharded(run: _Run, resume_from: Path, saved_ws: int) -> None:
    """ZeRO-1/2/3 shards written by another number of ranks: rank 0 converts them into DeepSpeed's
    universal form beside the checkpoints, every rank loads its partition from it, rank 0 deletes
    it. A failed conversion stops every rank with rank 0's reason (the others would wait forever)."""
    universal_root = run.root / "universal"  # not a step_* folder: checkpoint listing and pruning skip it
    failure: MedidiffError | None = None
    if run.dist.is_main:
        log.warning("%s was written by %d process(es): converting its ZeRO shards for %d (DeepSpeed's universal "
                    "checkpoint)", resume_from, saved_ws, run.dist.world_size)
        t0 = time.perf_counter()
        shutil.rmtree(universal_root, ignore_errors=True)  # what an earlier, killed attempt left
        try:
            to_universal(resume_from, universal_root / resume_from.name)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the other ranks, or they wait forever
            failure = exc if isinstance(exc, MedidiffError) else MedidiffError(
                f"{resume_from}: converting for {run.dist.world_size} processes failed ({type(exc).__name__}: {exc})")
        log.info("universal conversion took %.1f s", time.perf_counter() - t0)
    (failed,) = any_rank([failure is not None], run.dist)
    if failure is not None:
        raise failure
    if failed:
        raise MedidiffError(f"{resume_from}: rank 0 could not convert this checkpoint for {run.dist.world_size} processes "
                            "(its log says why)")
    load_engine_checkpoint(run.engine, universal_root, resume_from.name, run.dist.rank, universal=True)
    barrier()
    if run.dist.is_main:
        shutil.rmtree(universal_root, ignore_errors=True)


def _loader(run: _Run, dataset: Dataset, collate_fn: Callable[[list[Any]], Any] | None,
            num_workers: int) -> DataLoader | DeviceBatches:
    """One loader for the whole run (workers stay up across epochs); the loop counts epoch and
    position itself, and each item's augmentation is seeded by (seed, epoch, index). With
    ``train.data_on_device`` the same batches come from items loaded once onto the device."""
    sampler = ResumableSampler(len(dataset), seed=run.seed, rank=run.dist.rank, world_size=run.dist.world_size)
    keys = StreamSampler(sampler, run.cfg.micro_batch, run.epoch, run.position)

    def loader(order: Any, batch_size: int, persistent: bool = False) -> DataLoader:
        return DataLoader(
            SeededItems(dataset), batch_size=batch_size, sampler=order, collate_fn=collate_fn,
            num_workers=num_workers, persistent_workers=persistent and num_workers > 0,
            pin_memory=run.device.type == "cuda", worker_init_fn=_ignore_stop_signals if num_workers > 0 else None,
        )

    # auto holds the set only on a GPU (on a CPU the items would be a second copy in the same memory)
    if run.cfg.data_on_device is True or run.cfg.data_on_device == "auto" and run.device.type == "cuda":
        try:
            return DeviceBatches(dataset, keys, run.cfg.micro_batch, load=loader,
                                 move=lambda batch: move_to(batch, run.device), device=run.device,
                                 item_seed=lambda index: derive_seed(run.seed, 0, index),
                                 agree=lambda flag: any_rank([flag], run.dist)[0])
        except NotHeld as e:  # every rank alike: the same pipeline, and the room decided together
            if run.cfg.data_on_device != "auto":
                raise
            if run.dist.rank == 0:
                log.warning("train.data_on_device: auto: the loader feeds this run (%s)", e.reason)
    return loader(keys, run.cfg.micro_batch, persistent=True)


# ---- one optimizer step ----------------------------------------------------------------------


def _train_step(run: _Run, it: Iterator[Any], loss_fn: LossFn) -> None:
    """``grad_accum`` micro-batches, each seeded by (seed, step, micro, rank), then the update.

    The phases carry profiler labels (``medidiff/...``): free when no profiler runs, and what
    benchmarks/loop_bench.py --profile-steps splits a step by."""
    cfg, engine, device = run.cfg, run.engine, run.device
    step_loss = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        with record_function("medidiff/data"):
            batch = next(it)  # the stream never ends
            run.position += 1
            if run.position >= run.batches_per_epoch:  # the next batch starts a new epoch
                run.epoch, run.position = run.epoch + 1, 0
            s = derive_seed(run.seed, run.step, micro, run.dist.rank)
            torch.manual_seed(s)
            gen = torch.Generator(device=device).manual_seed(s)
            batch = move_to(batch, device)
        with record_function("medidiff/forward"), run.autocast:
            # through the engine, not engine.module: its forward hooks tell ZeRO which
            # micro-step is the accumulation boundary (bypassed, ZeRO-3 applied only
            # the last micro-batch's gradient)
            loss, logs = loss_fn(engine, batch, gen)
        with record_function("medidiff/backward"):
            engine.backward(loss)
        with record_function("medidiff/optimizer"):
            engine.step()
        step_loss += loss.detach().float() / cfg.grad_accum
        add_logs(run.step_logs, logs, 1.0 / cfg.grad_accum)
    run.step += 1
    if run.step % cfg.ema_every == 0:
        with record_function("medidiff/ema"):
            _update_ema(run)
    run.pending.append(step_loss)
    if run.bar is not None:
        run.bar.update(1)


def _update_ema(run: _Run) -> None:
    """The EMA of the fp32 masters under bf16/fp16. Where each rank holds pieces of them (ZeRO-1/2)
    it averages its own pieces, and :func:`_averaged` assembles the whole when it is read: no
    communication a step (assembling every step took one collective per parameter)."""
    pieces = master_pieces(run.engine)
    if pieces is not None:
        run.ema.update_pieces(pieces)
        return
    with trained_parameters(run.engine) as params:
        run.ema.update(params)


def _averaged(run: _Run) -> EMA:
    """The EMA with its whole shadow on this rank; a collective under ZeRO-1/2, so every rank calls it."""
    run.ema.gather_pieces()
    return run.ema


def _read_losses(run: _Run) -> None:
    """Move the pending losses to result.losses; a non-finite one on any rank stops every rank
    (the gradients were all-reduced, so all weights are bad) before any save, preview or
    validation uses them."""
    if not run.pending:
        return
    first = run.step - len(run.pending) + 1
    values = torch.stack(run.pending).tolist()
    run.pending.clear()
    bad = next(((first + i, v) for i, v in enumerate(values) if not math.isfinite(v)), None)
    if any_rank([bad is not None], run.dist)[0]:
        where = f"loss became {bad[1]} at step {bad[0]}" if bad else "another rank's loss became non-finite"
        raise MedidiffError(f"{where}: lower train.lr or check the data (the last checkpoint, before it, "
                            f"is intact)")
    run.result.losses.extend(values)
    run.window.extend(values)


# ---- periodic work: log line, validation, previews --------------------------------------------


def _log_line(run: _Run) -> None:
    _read_losses(run)
    cfg, now = run.cfg, time.perf_counter()
    dt = max(now - run.t_last, 1e-9)
    n_steps = run.step - run.steps_last
    vols = n_steps * cfg.micro_batch * cfg.grad_accum * run.dist.world_size
    values: dict[str, Any] = {
        "loss": sum(run.window) / max(1, len(run.window)),
        "lr": float(run.engine.get_lr()[0]),
        "epoch": run.epoch,
        "steps_per_s": n_steps / dt,
        "volumes_per_s": vols / dt,
        # per-band and per-modality losses were summed over the window's steps (no host read a step)
        **_read_logs(run.step_logs, n_steps),
    }
    values.update(run.data_wait.lap() if run.data_wait is not None else {})
    if run.device.type == "cuda":
        values["gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated(run.device) / 2**30
    run.run_log.log(run.step, values)
    if run.bar is not None:
        run.bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
    run.window.clear()
    run.step_logs.clear()
    run.t_last, run.steps_last = now, run.step


def _periodic(run: _Run, *, stopping: bool, val_fn: ValFn | None, preview_fn: PreviewFn | None) -> None:
    """The log line (also at the last step of this call), validation and previews. A stop
    signal skips validation and previews: the checkpoint must be written before SIGKILL."""
    cfg, step = run.cfg, run.step
    if step % cfg.log_every == 0 or stopping:
        _log_line(run)
    if run.result.preempted:
        return
    if cfg.val_every and val_fn is not None and step % cfg.val_every == 0:
        _read_losses(run)
        run.run_log.log(step, {f"val/{k}": v for k, v in _validate(run, val_fn).items()})
    if cfg.preview_every and preview_fn is not None and step % cfg.preview_every == 0:
        _read_losses(run)  # on every rank: it takes a collective
        ema = _averaged(run)  # likewise
        if run.dist.is_main:
            written = preview_fn(step, run.eval_copy.load(run.engine, ema), run.run_dir / "previews")  # type: ignore[union-attr]
            if written is not None:
                run.run_log.artifact(written, "previews")


def _validate(run: _Run, val_fn: ValFn) -> dict[str, float]:
    """Each rank validates its shard of the held-out set with the EMA weights; the sums and
    counts are combined, so the value does not depend on the number of ranks."""
    module = run.eval_copy.load(run.engine, _averaged(run))  # type: ignore[union-attr]
    sums, count = val_fn(module, run.dist.rank, run.dist.world_size)
    parts = [(sums, count)]
    if run.dist.world_size > 1:
        parts = [None] * run.dist.world_size  # type: ignore[list-item]
        torch.distributed.all_gather_object(parts, (sums, count), group=run.dist.control)
    total = sum(c for _, c in parts)
    keys = sorted({k for s, _ in parts for k in s})
    return {k: sum(s.get(k, 0.0) for s, _ in parts) / max(total, 1) for k in keys}


# ---- stopping and checkpoints ----------------------------------------------------------------


def _stop_now(run: _Run, pre: _Preemption) -> bool:
    """Whether every rank stops after this step; sets result.preempted / time_limited.

    A signal (SLURM may send it to some ranks only) or the deadline stops every rank at the
    same step, or the others would wait in a collective forever. The ranks agree every step,
    so a stop takes one step whatever log_every is; the agreement is one all_reduce of two
    flags on the CPU control group, which does not wait for queued GPU work.
    """
    out_of_time = run.deadline is not None and time.monotonic() >= run.deadline
    requested, out_of_time = any_rank([pre.requested, out_of_time], run.dist)
    run.result.preempted = requested
    run.result.time_limited = out_of_time and not requested and run.step < run.cfg.max_steps
    return requested or out_of_time or run.step >= run.cfg.max_steps


def _checkpoint(run: _Run) -> None:
    """Every rank writes its DeepSpeed shards; rank 0 the gathered weights, EMA, state, COMPLETE."""
    _read_losses(run)  # never checkpoint weights updated from a non-finite loss
    state = {"step": run.step, "epoch": run.epoch, "position": run.position, "seed": run.seed,
             "ema_updates": run.ema.num_updates, "world_size": run.dist.world_size,
             "micro_batch": run.cfg.micro_batch, "zero_stage": zero_stage(run.engine), "record": run.record}
    engine, dist = run.engine, run.dist
    tag = ckpt.tag_for_step(run.step)
    run.root.mkdir(parents=True, exist_ok=True)
    save_engine_checkpoint(engine, run.root, tag)  # every rank: DeepSpeed writes its shards
    directory = run.root / tag
    with full_parameters(engine) as params:  # collective under ZeRO-3
        if dist.is_main:
            ckpt.save_tensors(directory / "model.safetensors", dict(zip(_all_names(engine), params)))
    ema = _averaged(run)  # every rank: a collective under ZeRO-1/2
    if dist.is_main:
        ckpt.save_tensors(directory / "ema.safetensors", dict(zip(run.names, ema.shadow)))
    barrier()
    if dist.is_main:
        ckpt.mark_complete(directory, state)
        ckpt.prune(run.root, run.cfg.keep_last)
    barrier()
    run.result.last_checkpoint = directory


def _say_why_stopped(run: _Run) -> None:
    if not run.dist.is_main:
        return
    if run.result.preempted:
        log.warning("stop requested by signal: checkpoint written at step %d; resume with --resume", run.step)
    elif run.result.time_limited:
        log.warning("train.max_minutes=%g reached at step %d of %d: checkpoint written, stopping",
                    run.cfg.max_minutes, run.step, run.cfg.max_steps)


def fit(
    model: torch.nn.Module,
    loss_fn: LossFn,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    run_dir: str | Path,
    seed: int,
    resume: bool = False,
    overwrite: bool = False,
    record: dict[str, Any] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    preview_fn: PreviewFn | None = None,
    val_fn: ValFn | None = None,
    progress: bool = True,
    num_workers: int = 0,
    tracking: LogConfig | None = None,
) -> FitResult:
    """Train ``model`` with ``loss_fn(engine, batch, generator) -> (loss, logs)`` under DeepSpeed.

    Args:
        model: the trainable network only (frozen codecs/encoders stay outside, used by loss_fn).
        loss_fn: gets the DeepSpeed engine, which it calls like ``model`` (``engine(x, t, ...)``
            runs ``model.forward``), exactly once per micro-batch: the engine's forward is where
            DeepSpeed learns which micro-step ends an accumulation window.
        dataset: map-style dataset; batches of ``cfg.micro_batch`` items per process.
        run_dir: where checkpoints/, metrics.jsonl and tensorboard/ go. A fresh run (``resume``
            False) into a folder that holds a run is refused unless ``overwrite`` (see
            :func:`~medidiff.training.run_dir.claim_run_dir`); rank 0 locks it for the process.
        record: JSON-able facts stored in every checkpoint's state.json (resolved config...).
        preview_fn: ``preview_fn(step, module, out_dir)``, called on rank 0 alone every
            ``cfg.preview_every`` steps with a plain (not ZeRO-partitioned) copy of the model holding
            the EMA weights.
        val_fn: ``val_fn(module, rank, world_size) -> (sums, count)``, called every
            ``cfg.val_every`` steps on every rank with that copy: each rank evaluates its shard
            (items ``rank::world_size``) and returns metric sums and the count they divide by.
        num_workers: DataLoader worker processes per rank (``data.num_workers``); batches and
            augmentation are the same for any value, so a run may resume with another.
        tracking: the ``log:`` section: MLflow / W&B runs that rank 0 feeds with the logged
            scalars, ``record["config"]`` (flattened) as parameters and the files ``preview_fn``
            returns (:mod:`~medidiff.training.tracking`).
    """
    check_trackers(tracking)  # every rank, before any work: all stop together on a missing package
    if cfg.data_on_device is True:
        refuse_random_items(dataset)  # every rank, before any run folder, engine or tracker run exists
    run_dir = claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    run = _setup(model, dataset, cfg, run_dir, seed=seed, resume=resume, record=record, progress=progress,
                 evaluates=bool(val_fn is not None and cfg.val_every or preview_fn is not None and cfg.preview_every),
                 tracking=tracking)
    it: Any = None
    failed = True  # until the loop ends normally: the trackers' run status
    try:
        # signal handlers first, then the loader's workers (they ignore the stop signals)
        with _Preemption() as pre:
            # timed: the share of wall time spent waiting for batches goes to the log line, and a
            # loader-bound window logs a warning (medidiff/training/data_wait.py)
            # held on the device, a batch is a gather there: a host ahead of the GPU waits in it for the
            # launch queue (10-21 % of the anatomy recipe's wall time: quality_scale_h200_20261201b), which no loader
            # setting changes
            batches = _loader(run, dataset, collate_fn, num_workers)
            it = run.data_wait = DataWait(iter(batches), warn=not isinstance(batches, DeviceBatches))
            run.engine.train()
            run.t_last = time.perf_counter()
            while run.step < cfg.max_steps:
                _train_step(run, it, loss_fn)
                with record_function("medidiff/periodic"):
                    stop = _stop_now(run, pre)
                    _periodic(run, stopping=stop, val_fn=val_fn, preview_fn=preview_fn)
                if stop or (cfg.ckpt_every and run.step % cfg.ckpt_every == 0):
                    _checkpoint(run)
                if stop:
                    _say_why_stopped(run)
                    break
        _read_losses(run)
        # No rank leaves while another may still talk to it (rank 0 alone writes previews and the
        # last checkpoint's files): an early rank's exit tore down its gloo connections under
        # rank 1 of a 2-rank ZeRO-3 run on a busy CPU ("terminate called without an active exception").
        barrier()
        finished_cleanly()  # every rank got here: the exit may line up the ranks' teardowns
        failed = False
    finally:  # also on errors: no worker processes or open logs outlive the loop
        if run.bar is not None:
            run.bar.close()
        if num_workers > 0 and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        run.run_log.close("FAILED" if failed else "FINISHED" if run.step >= cfg.max_steps else "KILLED")
    run.result.final_step = run.step
    return run.result
