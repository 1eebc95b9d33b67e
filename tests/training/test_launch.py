"""srun without torchrun: SLURM's variables give the rank, world size and rendezvous."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.launch import adopt_slurm_env, first_host, rendezvous_port

REPO = Path(__file__).resolve().parents[2]


def test_first_host_of_slurm_node_lists():
    assert first_host("gpu[07-08,11],cpu1") == "gpu07"
    assert first_host("node3,node4") == "node3"
    assert first_host("a-b[1-2]-ib") == "a-b1-ib"
    with pytest.raises(MedidiffError, match="set MASTER_ADDR"):
        first_host("gpu[07")


def test_srun_task_variables_become_torch_distributed_ones():
    env = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123457",
           "SLURM_STEP_NODELIST": "gpu[07-08]"}
    assert adopt_slurm_env(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("3", "4", "1")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("gpu07", str(rendezvous_port(123457)))
    # torchrun under srun: its variables win; a batch script without srun has no step variables
    assert not adopt_slurm_env({"RANK": "0", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2"})
    assert not adopt_slurm_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_NODELIST": "n1"})
    assert not adopt_slurm_env({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"})


def test_two_srun_tasks_without_torchrun_train_as_one_job(tmp_path):
    # What `srun -n 2 python -m ...` starts: two processes that differ only in SLURM_PROCID/LOCALID.
    # Before, each trained alone (world size 1) and both wrote the same checkpoints.
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    base = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    base.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", SLURM_STEP_NUM_TASKS="2", SLURM_JOB_ID=str(os.getpid()),
                SLURM_STEP_NODELIST="localhost", MASTER_ADDR="127.0.0.1")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.training.toy_train", str(tmp_path), "--steps", "2",
                               "--grad-accum", "1"], cwd=REPO, env={**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    state = ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(tmp_path)))
    assert state["world_size"] == 2 and state["step"] == 2


_HOLDS_PORT = """
import errno, os, socket, torch
from medidiff.training.engine import setup_distributed
dist = setup_distributed(torch.device("cpu"), deepspeed=True)
port = int(os.environ["MASTER_PORT"])
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        assert e.errno == errno.EADDRINUSE, e
    else:
        raise SystemExit(f"port {port} was free after rendezvous: another run could take it")
assert dist.world_size == 1 and torch.distributed.get_world_size() == 1
print("held", port)
"""


def test_a_process_started_alone_holds_its_rendezvous_port_from_the_start():
    # quality_scale's side-by-side runs each chose a free port, released it, and bound it later:
    # two took the same one and a run died with EADDRINUSE. The store now binds the port it gets.
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _HOLDS_PORT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "held" in done.stdout


def test_deepspeed_on_cpu_never_builds_its_shared_memory_op_at_run_time():
    # DeepSpeed's comm backend would JIT-compile C++ (a compiler at run time, ~1 min on 2 cores) when it starts
    # on a CPU; setup_distributed marks the op unavailable there, and the backend then uses gloo alone
    from deepspeed.comm.torch import build_shm_op

    from medidiff.training.engine import _skip_deepspeed_shm_op

    _skip_deepspeed_shm_op()
    assert build_shm_op() is None
