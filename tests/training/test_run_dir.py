"""Run-folder safety: a fresh run never starts in a used folder, and one job at a time holds it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.run_dir import LOCK_NAME, claim_run_dir
from tests.training import toy_train


def _toy(run, steps, **kw):
    return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), toy_train.config(0, steps),
                         run_dir=run, seed=0, progress=False, **kw)


def test_a_fresh_run_into_a_used_folder_is_refused_and_overwrite_starts_over(tmp_path):
    _toy(tmp_path, 4)
    before = sorted(p.name for p in ckpt.list_complete(ckpt.checkpoint_root(tmp_path)))
    with pytest.raises(MedidiffError) as err:
        _toy(tmp_path, 2)
    message = str(err.value)
    assert "\n" not in message and "--resume" in message and "--overwrite" in message
    # nothing of the old run was touched
    assert sorted(p.name for p in ckpt.list_complete(ckpt.checkpoint_root(tmp_path))) == before
    # --overwrite: the new run's checkpoints only (before, pruning deleted the new ones first)
    _toy(tmp_path, 2, overwrite=True)
    assert [p.name for p in ckpt.list_complete(ckpt.checkpoint_root(tmp_path))] == ["step_00000002"]
    with pytest.raises(MedidiffError, match="contradict"):
        claim_run_dir(tmp_path, resume=True, overwrite=True)


def test_a_second_job_on_a_locked_folder_is_refused(tmp_path):
    # another live process on this host holds the lock
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "run"
        run.mkdir()
        (run / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "slurm_job": None}))
        with pytest.raises(MedidiffError, match=rf"{LOCK_NAME}: the run folder is in use by process {holder.pid}"):
            claim_run_dir(run, resume=True)
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    claim_run_dir(run, resume=True)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"host": "other-node", "pid": 1, "slurm_job": "4242"}))
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    with pytest.raises(MedidiffError, match="SLURM job 4242"):
        claim_run_dir(run, resume=True)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # the same job, requeued onto another node
    claim_run_dir(run, resume=True)


class _RunsCode:
    """Unpickling this runs a command (what a planted checkpoint file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_malicious_checkpoint_is_refused_before_it_runs(tmp_path):
    import torch

    run, marker = tmp_path / "run", tmp_path / "pwned"
    _toy(run, 2)
    planted = ckpt.latest_complete(ckpt.checkpoint_root(run)) / "mp_rank_00_model_states.pt"
    torch.save({"module": _RunsCode(marker)}, planted)
    with pytest.raises(MedidiffError, match=r"mp_rank_00_model_states.pt: refused to load.*posix.system"):
        _toy(run, 4, resume=True)
    assert not marker.exists()  # nothing ran
