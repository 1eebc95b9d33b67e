"""configs/slurm/train.sbatch on CPU with stand-ins for SLURM's commands: a stop signal to the
batch shell reaches the training step, which writes a complete checkpoint; the job requeues
itself (scontrol requeue), and the requeued run continues from that checkpoint."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.training import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]

FAKES = {
    # srun: drop its options, run the command (exec: the batch shell's $! is the step itself)
    "srun": '#!/usr/bin/env bash\nwhile [[ "${1:-}" == -* ]]; do shift; done\nexec "$@"\n',
    "scontrol": '#!/usr/bin/env bash\necho "$*" >> "$FAKE_SCONTROL_LOG"\n'
                'if [ "$1 $2" = "show hostnames" ]; then echo 127.0.0.1; fi\n',
    "torchrun": f'#!/usr/bin/env bash\nexec {sys.executable} -m torch.distributed.run "$@"\n',
}


def _sbatch(tmp: Path, extra: list[str], fakes: dict[str, str] | None = None,
            env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {**FAKES, **(fakes or {})}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", SLURM_JOB_ID="4242",
               SLURM_JOB_NODELIST="node1", SLURM_NNODES="1", SLURM_GPUS_ON_NODE="1", SLURM_CPUS_PER_TASK="1",
               FAKE_SCONTROL_LOG=str(tmp / "scontrol.log"), **(env_extra or {}))
    overrides = [
        "name=run", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}",
        "data.fold=null", "data.roi=[16,16,16]", "data.cache=memory", "data.label_mode=none",
        "net.channels=[8,16]", "net.num_res_blocks=1", "net.norm_groups=8", "objective.type=flow",
        "train.micro_batch=1", "train.precision=fp32", "train.device=cpu", "train.deepspeed=zero2",
        "train.lr_schedule=constant", "train.warmup_steps=0", "train.log_every=50", "train.ckpt_every=0",
        "latent.fit_stats=false", *extra,
    ]
    args = [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen(["bash", str(REPO / "configs" / "slurm" / "train.sbatch"), str(tmp / "e.yaml"), *args,
                             "--no-progress"], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        try:  # the whole session: the batch shell may be gone while its step runs on
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return err


# A training step that only waits for SIGTERM (as torchrun's ranks do) and says when it got it.
STEP = ('#!/usr/bin/env bash\ntrap \'echo term >> "$FAKE_SCONTROL_LOG.step"; exit 0\' TERM\n'
        'echo started >> "$FAKE_SCONTROL_LOG.step"\nwhile :; do sleep 0.1; done\n')


@pytest.mark.parametrize("requeue", ["1", "0"])
def test_sbatch_traps_the_signal_forwards_it_to_the_step_and_requeues(tmp_path, requeue):
    proc = _sbatch(tmp_path, [], fakes={"torchrun": STEP}, env_extra={"MEDIDIFF_REQUEUE": requeue})
    started = Path(f"{tmp_path / 'scontrol.log'}.step")
    deadline = time.monotonic() + 30
    while not started.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, _finish(proc)
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGUSR1)  # the batch shell only, as --signal=B:USR1@300
    err = _finish(proc, timeout=30)
    assert proc.returncode == 0, err  # without the trap bash died of USR1 (138) and the step trained on
    assert started.read_text().split() == ["started", "term"]
    log = (tmp_path / "scontrol.log").read_text()
    assert ("requeue 4242" in log) == (requeue == "1")


@pytest.mark.slow
def test_sbatch_forwards_the_stop_signal_checkpoints_requeues_and_resumes(tmp_path):
    write_phantom_dataset(tmp_path / "data", 2, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    (tmp_path / "e.yaml").write_text("stage: diffusion\n")
    run = tmp_path / "runs" / "run"
    proc = _sbatch(tmp_path, ["train.max_steps=100000"])
    # wait until it trains (the first step's tensorboard event file appears after DeepSpeed init)
    deadline = time.monotonic() + 300
    while not list((run / "tensorboard").glob("events.*")) if (run / "tensorboard").is_dir() else True:
        assert proc.poll() is None and time.monotonic() < deadline, _finish(proc)[-3000:]
        time.sleep(0.5)
    time.sleep(2)
    os.kill(proc.pid, signal.SIGUSR1)  # what --signal=B:USR1@300 does: the batch shell only
    err = _finish(proc)
    assert proc.returncode == 0, err[-3000:]
    last = ckpt.latest_complete(ckpt.checkpoint_root(run))
    assert last is not None, err[-3000:]
    stopped_at = ckpt.read_state(last)["step"]
    assert "requeue 4242" in (tmp_path / "scontrol.log").read_text()
    # the requeued job (same id, same command) continues from that checkpoint
    (tmp_path / "scontrol.log").unlink()
    proc = _sbatch(tmp_path, [f"train.max_steps={stopped_at + 2}"])
    err = _finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(run)))["step"] == stopped_at + 2
    assert "requeue" not in (tmp_path / "scontrol.log").read_text()  # finished: no requeue
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == stopped_at + 2
