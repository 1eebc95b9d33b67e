"""Who may write into a run folder.

Two rules keep one run's checkpoints from being mixed with another's:

* a fresh run (no ``--resume``) never starts in a folder that holds a run: pruning keeps the
  highest step numbers, so a new run's early checkpoints would be deleted first and export would
  take the old run's newest one. The user says what they mean: ``--resume`` to continue,
  ``--overwrite`` to delete the old run's outputs, or another folder;
* one job at a time: rank 0 holds ``RUN/train.lock`` (host, pid, SLURM job id) for the life of
  the process. A lock whose process is gone (same host, dead pid) or that belongs to this SLURM job
  (a requeued job keeps its id and runs again, often on another node) is taken over.

The lock is a file created with ``O_EXCL`` rather than ``flock``: advisory locks are not honoured
by every cluster file system (Lustre needs a mount option), an exclusive create is.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
from pathlib import Path

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.launch import process_rank

__all__ = ["LOCK_NAME", "RUN_OUTPUTS", "is_used", "claim_run_dir"]

LOCK_NAME = "train.lock"
# What a training run writes into its folder (``--overwrite`` deletes these, nothing else: data
# caches under the folder stay, they do not depend on the run).
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "tensorboard", "previews", "model", "codec", "resolved_config.yaml",
               "mlflow_run.json", "wandb_run.json", "wandb")  # the trackers' run ids, W&B's offline files

_held: set[Path] = set()  # lock files this process holds


def is_used(run_dir: str | Path) -> bool:
    """True if ``run_dir`` holds a run: a checkpoint folder (complete or not) or a metrics log."""
    run_dir = Path(run_dir)
    root = ckpt.checkpoint_root(run_dir)
    has_ckpt = root.is_dir() and any(p.name.startswith("step_") for p in root.iterdir())
    return has_ckpt or (run_dir / "metrics.jsonl").is_file()


def claim_run_dir(run_dir: str | Path, *, resume: bool, overwrite: bool = False, rank: int | None = None) -> Path:
    """Lock ``run_dir`` for this job (rank 0) and refuse a fresh run into a used folder.

    With ``overwrite`` rank 0 deletes the previous run's outputs (:data:`RUN_OUTPUTS`) after taking
    the lock. Calling it again in the same process is harmless. Returns the folder.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise MedidiffError("--resume and --overwrite contradict each other: --resume continues the run in "
                            f"{run_dir}, --overwrite deletes it")
    rank = process_rank() if rank is None else rank
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _lock(run_dir / LOCK_NAME)
    if not resume and is_used(run_dir):
        if not overwrite:
            newest = ckpt.latest_complete(ckpt.checkpoint_root(run_dir))
            what = f"a run (checkpoint {newest.name})" if newest else "a run's logs"
            raise MedidiffError(
                f"{run_dir}: holds {what}; continue it with --resume, start over with --overwrite (deletes its "
                f"checkpoints, logs and exported model), or train into another folder (name/output_dir)"
            )
        if rank == 0:
            for name in RUN_OUTPUTS:
                path = run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    return run_dir


def _owner() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _stale(holder: dict[str, object], me: dict[str, object]) -> bool:
    if holder.get("slurm_job") and holder.get("slurm_job") == me["slurm_job"]:
        return True  # this job, requeued or restarted: the old holder was ended by SLURM
    if holder.get("host") == me["host"]:
        pid = holder.get("pid")
        return not isinstance(pid, int) or pid == me["pid"] or not _pid_alive(pid)
    return False


def _lock(path: Path) -> None:
    path = path.absolute()
    if path in _held:
        return
    me = _owner()
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}  # half-written by a process killed while locking: treat as stale
            if holder and not _stale(holder, me):
                job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
                raise MedidiffError(
                    f"{path}: the run folder is in use by process {holder.get('pid')} on {holder.get('host')}{job}; "
                    f"wait for that job or train into another folder (delete this file only if that job is gone)"
                ) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        _held.add(path)
        atexit.register(_release, path, me["pid"])
        return
    raise MedidiffError(f"{path}: could not take the run folder's lock (another job took it at the same time)")


def _release(path: Path, pid: object) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, json.JSONDecodeError):
        pass
    _held.discard(path)
