"""The one training loop (VAE, diffusion and super-resolution stages all train through it).

What makes resume exact:

* the data order is a seeded permutation per epoch that can start mid-epoch
  (:class:`~medidiff.training.sampler.ResumableSampler`), and the position is checkpointed;
* every micro-step reseeds torch's global RNG and hands the loss a generator, both from
  ``(seed, step, micro, rank)``: noise, timesteps, dropout and conditioning dropout do not
  depend on what ran before, so nothing random has to be restored;
* model, optimizer and LR schedule come back from DeepSpeed's checkpoint, EMA from its own
  fp32 safetensors file;
* metrics.jsonl is cut back to the resumed step.

On CPU with fp32 a resumed run is bitwise equal to an uninterrupted one (tested). On GPUs,
non-deterministic kernels (atomics in conv backward, NCCL reduction order) make it equal only
within floating-point tolerance.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.config import TrainConfig
from medidiff.training.ema import EMA
from medidiff.training.engine import (
    DistInfo,
    barrier,
    build_engine,
    full_parameters,
    load_engine_checkpoint,
    resolve_device,
    save_engine_checkpoint,
    setup_distributed,
    zero_stage,
)
from medidiff.training.run_dir import claim_run_dir
from medidiff.training.run_log import RunLog
from medidiff.training.sampler import ResumableSampler, SeededItems, StreamSampler, derive_seed

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any, torch.Generator], "tuple[torch.Tensor, dict[str, float]]"]

__all__ = ["FitResult", "fit", "move_to"]


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


class _Preemption:
    """SIGTERM/SIGUSR1 (SLURM sends them before killing a job) -> checkpoint and stop cleanly."""

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


def _any_rank(flag: bool, device: torch.device, dist: DistInfo) -> bool:
    """True on every rank if it is True on any (ranks must agree to stop, or a collective hangs)."""
    return _any_ranks([flag], device, dist)[0]


def _any_ranks(flags: list[bool], device: torch.device, dist: DistInfo) -> list[bool]:
    """:func:`_any_rank` for several flags with one all_reduce."""
    if dist.world_size == 1 or not torch.distributed.is_initialized():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _read_logs(logs: dict[str, Any]) -> dict[str, float]:
    """``{"loss/<k>": float}`` from floats and device scalars, with one host read for the tensors."""
    keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    out = {f"loss/{k}": float(v) for k, v in logs.items() if not isinstance(v, torch.Tensor)}
    if keys:
        out.update({f"loss/{k}": v for k, v in zip(keys, torch.stack([logs[k].float() for k in keys]).tolist())})
    return out


def _named_params(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _save(engine: Any, ema: EMA, names: list[str], root: Path, step: int, state: dict[str, Any],
          dist: DistInfo, keep_last: int) -> Path:
    tag = ckpt.tag_for_step(step)
    root.mkdir(parents=True, exist_ok=True)
    save_engine_checkpoint(engine, root, tag)  # every rank: DeepSpeed writes its shards
    directory = root / tag
    with full_parameters(engine) as params:  # collective under ZeRO-3
        if dist.is_main:
            weights = {n: p for n, p in zip(_all_names(engine), params)}
            ckpt.save_tensors(directory / "model.safetensors", weights)
    if dist.is_main:
        ckpt.save_tensors(directory / "ema.safetensors", dict(zip(names, ema.shadow)))
    barrier()
    if dist.is_main:
        ckpt.mark_complete(directory, state)
        ckpt.prune(root, keep_last)
    barrier()
    return directory


@contextmanager
def _ema_weights(engine: Any, ema: EMA) -> Iterator[None]:
    """Temporarily load the EMA weights into the engine's module (for validation/previews)."""
    with full_parameters(engine, modify=True):
        params = [p for _, p in _named_params(engine.module)]
        ema.store(params)
        ema.copy_to(params)
    try:
        yield
    finally:
        with full_parameters(engine, modify=True):
            ema.restore([p for _, p in _named_params(engine.module)])


def _all_names(engine: Any) -> list[str]:
    return [n for n, _ in engine.module.named_parameters()]


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
    preview_fn: Callable[[int, torch.nn.Module, Path], None] | None = None,
    val_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
    num_workers: int = 0,
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
        preview_fn: called on rank 0 every ``cfg.preview_every`` steps with the EMA weights loaded.
        val_fn: called every ``cfg.val_every`` steps (all ranks) with the EMA weights loaded.
        num_workers: DataLoader worker processes per rank (``data.num_workers``); batches and
            augmentation are the same for any value, so a run may resume with another.
    """
    run_dir = claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    device = resolve_device(cfg.device)
    dist = setup_distributed(device)
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
    engine = build_engine(model, cfg, dist)
    if cfg.compile:
        # torch.compile inside DeepSpeed (fuses norm/activation/cast passes)
        engine.compile(compile_kwargs={} if cfg.compile_mode == "default" else {"mode": cfg.compile_mode})

    step, epoch, position = 0, 0, 0
    if resume_from is not None:
        load_engine_checkpoint(engine, root, resume_from.name, dist.rank)
        state = ckpt.read_state(resume_from)
        step, epoch, position = int(state["step"]), int(state["epoch"]), int(state["position"])
        shadow = ckpt.load_tensors(resume_from / "ema.safetensors")
        missing = [n for n in names if n not in shadow]
        if missing:
            raise MedidiffError(f"{resume_from / 'ema.safetensors'}: missing EMA tensors {missing[:3]}...: "
                                "the checkpoint belongs to a different model")
        ema.load_state_dict({"shadow": [shadow[n] for n in names], "num_updates": int(state["ema_updates"])})
        if dist.is_main:
            log.info("resumed from %s (step %d)", resume_from, step)

    sampler = ResumableSampler(len(dataset), seed=seed, rank=dist.rank, world_size=dist.world_size)
    if sampler.per_rank < cfg.micro_batch:
        raise MedidiffError(
            f"the data set has {len(dataset)} cases: fewer than micro_batch={cfg.micro_batch} per "
            f"process over {dist.world_size} process(es)"
        )
    batches_per_epoch = sampler.per_rank // cfg.micro_batch
    if position >= batches_per_epoch:
        raise MedidiffError(
            f"{resume_from}: the saved data position (batch {position} of the epoch) is past an epoch of "
            f"{batches_per_epoch} batches: micro_batch, the number of processes or the data set changed "
            f"since this checkpoint; resume with the ones it was written with"
        )

    # One loader for the whole run (workers stay up across epochs); the loop counts epoch and
    # position itself, and each item's augmentation is seeded by (seed, epoch, index).
    loader = DataLoader(
        SeededItems(dataset), batch_size=cfg.micro_batch,
        sampler=StreamSampler(sampler, cfg.micro_batch, epoch, position), collate_fn=collate_fn,
        num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=device.type == "cuda",
    )

    run_log = RunLog(run_dir, enabled=dist.is_main, resume_step=step if resume_from else None)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.precision in ("autocast-bf16", "bf16") else nullcontext()
    )
    bar = None
    if dist.is_main and progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    result = FitResult(run_dir=run_dir, final_step=step, last_checkpoint=resume_from)
    window: list[float] = []
    # Per-step losses stay on the device until a log step, validation, preview or checkpoint reads
    # them all at once: reading each one (float(loss)) would stop the CPU every step until the GPU
    # catches up, so kernel launches could not overlap the GPU's work.
    pending: list[torch.Tensor] = []

    def read_losses() -> None:
        """Move the pending losses to result.losses; a non-finite one on any rank stops every rank
        (the gradients were all-reduced, so all weights are bad) before any save, preview or
        validation uses them."""
        if not pending:
            return
        first = step - len(pending) + 1
        values = torch.stack(pending).tolist()
        pending.clear()
        bad = next(((first + i, v) for i, v in enumerate(values) if not math.isfinite(v)), None)
        if _any_rank(bad is not None, device, dist):
            where = f"loss became {bad[1]} at step {bad[0]}" if bad else "another rank's loss became non-finite"
            raise MedidiffError(f"{where}: lower train.lr or check the data (the last checkpoint, before it, "
                                f"is intact)")
        result.losses.extend(values)
        window.extend(values)

    t_last, steps_last = time.perf_counter(), step
    it = iter(loader)
    engine.train()
    deadline = time.monotonic() + 60.0 * cfg.max_minutes if cfg.max_minutes else None
    try:
        with _Preemption() as pre:
            while step < cfg.max_steps:
                step_logs: dict[str, Any] = {}
                step_loss = torch.zeros((), device=device)
                for micro in range(cfg.grad_accum):
                    batch = next(it)  # the stream never ends
                    position += 1
                    if position >= batches_per_epoch:  # the next batch starts a new epoch
                        epoch, position = epoch + 1, 0
                    s = derive_seed(seed, step, micro, dist.rank)
                    torch.manual_seed(s)
                    gen = torch.Generator(device=device).manual_seed(s)
                    batch = move_to(batch, device)
                    with autocast:
                        # through the engine, not engine.module: its forward hooks tell ZeRO which
                        # micro-step is the accumulation boundary (bypassed, ZeRO-3 applied only
                        # the last micro-batch's gradient)
                        loss, logs = loss_fn(engine, batch, gen)
                    engine.backward(loss)
                    engine.step()
                    step_loss += loss.detach().float() / cfg.grad_accum
                    for k, v in logs.items():  # floats or device scalars (read at log steps only)
                        v = v.detach() if isinstance(v, torch.Tensor) else v
                        step_logs[k] = step_logs.get(k, 0.0) + v / cfg.grad_accum
                step += 1
                if step % cfg.ema_every == 0:
                    with full_parameters(engine) as _:
                        ema.update([p for _, p in _named_params(engine.module)])
                pending.append(step_loss)
                if bar is not None:
                    bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    read_losses()
                    now = time.perf_counter()
                    dt = max(now - t_last, 1e-9)
                    n_steps = step - steps_last
                    vols = n_steps * cfg.micro_batch * cfg.grad_accum * dist.world_size
                    values: dict[str, Any] = {
                        "loss": sum(window) / len(window),
                        "lr": float(engine.get_lr()[0]),
                        "epoch": epoch,
                        "steps_per_s": n_steps / dt,
                        "volumes_per_s": vols / dt,
                        **_read_logs(step_logs),
                    }
                    if device.type == "cuda":
                        values["gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                    run_log.log(step, values)
                    if bar is not None:
                        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
                    window.clear()
                    t_last, steps_last = now, step
                if cfg.val_every and val_fn is not None and step % cfg.val_every == 0:
                    read_losses()
                    with _ema_weights(engine, ema):
                        run_log.log(step, {f"val/{k}": v for k, v in val_fn(engine.module).items()})
                if cfg.preview_every and preview_fn is not None and step % cfg.preview_every == 0:
                    read_losses()  # on every rank: it may take a collective
                    if dist.is_main:
                        with _ema_weights(engine, ema):
                            preview_fn(step, engine.module, run_dir / "previews")
                # A signal (SLURM may send it to some ranks only) or the deadline stops every rank
                # at the same step, or the others would wait in a collective forever. Several ranks
                # agree with one all_reduce at log steps; one rank checks every step.
                requested, out_of_time = False, False
                if dist.world_size == 1 or step % cfg.log_every == 0:
                    requested, out_of_time = _any_ranks(
                        [pre.requested, deadline is not None and time.monotonic() >= deadline], device, dist)
                out_of_time = out_of_time and step < cfg.max_steps
                stop = requested or out_of_time or step == cfg.max_steps
                if stop or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
                    read_losses()  # never checkpoint weights updated from a non-finite loss
                    state = {"step": step, "epoch": epoch, "position": position, "seed": seed,
                             "ema_updates": ema.num_updates, "world_size": dist.world_size,
                             "zero_stage": zero_stage(engine), "record": record or {}}
                    result.last_checkpoint = _save(engine, ema, names, root, step, state, dist, cfg.keep_last)
                if requested:
                    result.preempted = True
                    if dist.is_main:
                        log.warning("stop requested by signal: checkpoint written at step %d; resume with --resume",
                                    step)
                    break
                if out_of_time:
                    result.time_limited = True
                    if dist.is_main:
                        log.warning("train.max_minutes=%g reached at step %d of %d: checkpoint written, stopping",
                                    cfg.max_minutes, step, cfg.max_steps)
                    break
        read_losses()
    finally:  # also on errors: no worker processes or open logs outlive the loop
        if bar is not None:
            bar.close()
        if num_workers > 0 and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        run_log.close()
    result.final_step = step
    return result
