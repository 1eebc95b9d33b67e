"""Which process this is: torchrun's variables, or SLURM's when ``srun`` started the processes.

``torchrun`` and the ``deepspeed`` launcher set RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT.
``srun python -m medidiff train`` (one task per GPU, no torchrun) sets only SLURM's own
variables; read as they were, every task would train alone on cuda:0 and write the same
checkpoints. :func:`adopt_slurm_env` translates them (rank = SLURM_PROCID, world size =
SLURM_STEP_NUM_TASKS, local rank = SLURM_LOCALID, the step's first node as rendezvous host, a port
derived from the job id so every task computes the same one). It needs no DeepSpeed: run-folder
locking and "only rank 0 writes" use it before the process group exists.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping

from medidiff.errors import MedidiffError

log = logging.getLogger(__name__)

__all__ = ["first_host", "rendezvous_port", "adopt_slurm_env", "process_rank"]

_BRACKET = re.compile(r"^([^\[\],]*)\[([^\]]+)\](.*)$")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``gpu[07-08,11],cpu1`` -> ``gpu07``)."""
    head, depth = "", 0
    for ch in nodelist.strip():  # the first top-level entry (commas inside [...] do not split)
        if ch == "," and depth == 0:
            break
        depth += (ch == "[") - (ch == "]")
        head += ch
    m = _BRACKET.match(head)
    if m is None:
        if "[" in head or not head:
            raise MedidiffError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot tell its first node; set MASTER_ADDR "
                                "(export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1))")
        return head
    prefix, ranges, suffix = m.groups()
    first = ranges.split(",")[0].split("-")[0]  # keeps zero padding: '07-08' -> '07'
    return f"{prefix}{first}{suffix}"


def rendezvous_port(job_id: str | int) -> int:
    """20000 + job id mod 20000: the same on every task of a job, different for jobs that share a
    node (a fixed 29500 made two jobs on one node collide). configs/slurm/train.sbatch uses it too."""
    return 20000 + int(job_id) % 20000


def adopt_slurm_env(env: MutableMapping[str, str] | None = None) -> bool:
    """Set RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT from an ``srun`` step's variables.

    Does nothing (returns False) under torchrun or the deepspeed launcher (RANK is set), outside
    SLURM, in a batch script without srun (no SLURM_STEP_NUM_TASKS) and for one-task steps.
    """
    env = os.environ if env is None else env
    if "RANK" in env or "SLURM_PROCID" not in env:
        return False
    tasks = env.get("SLURM_STEP_NUM_TASKS")
    if not tasks or int(tasks) <= 1:
        return False
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = tasks
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    if "MASTER_ADDR" not in env:
        env["MASTER_ADDR"] = first_host(nodelist)
    if "MASTER_PORT" not in env:
        if "SLURM_JOB_ID" not in env:
            raise MedidiffError("srun without torchrun: SLURM_JOB_ID is not set, so the tasks cannot agree on a "
                                "rendezvous port; set MASTER_PORT for every task")
        env["MASTER_PORT"] = str(rendezvous_port(env["SLURM_JOB_ID"]))
    if env["RANK"] == "0":
        log.info("srun without torchrun: %s tasks, rendezvous %s:%s", tasks, env["MASTER_ADDR"], env["MASTER_PORT"])
    return True


def process_rank() -> int:
    """This process's global rank (0 for a single process), before the process group exists."""
    adopt_slurm_env()
    return int(os.environ.get("RANK", "0"))
