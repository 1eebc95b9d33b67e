"""The training loop under DeepSpeed on CPU: ZeRO stages, exact resume after SIGKILL, a kill
during a save, EMA under ZeRO-3 with 2 gloo processes, and clear device errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.engine import resolve_device, sanitize_cuda_arch_list
from tests.training import toy_train

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], *, torchrun: int = 0, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    # In-process tests set RANK/MASTER_PORT... in os.environ: a child must pick its own.
    dist_keys = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in dist_keys}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "tests.training.toy_train", *args]
    else:
        cmd = [sys.executable, "-m", "tests.training.toy_train", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def _final(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.latest_complete(ckpt.checkpoint_root(run)) / name))


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_each_zero_stage_trains_and_checkpoints(tmp_path, stage):
    result = toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(),
                           toy_train.config(stage, 4), run_dir=tmp_path, seed=0, progress=False)
    assert result.final_step == 4 and len(result.losses) == 4
    assert all(torch.isfinite(torch.tensor(result.losses)))
    done = ckpt.list_complete(ckpt.checkpoint_root(tmp_path))
    assert [p.name for p in done] == ["step_00000002", "step_00000004"]
    state = ckpt.read_state(done[-1])
    assert state["step"] == 4 and state["zero_stage"] == stage
    ema, model = load_file(str(done[-1] / "ema.safetensors")), load_file(str(done[-1] / "model.safetensors"))
    assert ema.keys() == model.keys() and all(v.dtype == torch.float32 for v in ema.values())
    # The EMA lags the weights (warm-up decay (1+s)/(10+s) > 0 after the first update).
    assert any(not torch.equal(ema[k], model[k]) for k in ema)


def test_zero3_with_accumulation_equals_zero0_in_one_process(tmp_path):
    # The loss gets the engine: its forward marks the accumulation boundary for ZeRO-3. Through
    # engine.module, ZeRO-3 applied only the last micro-batch's gradient (10% off after 2 steps).
    for stage in (0, 3):
        torch.manual_seed(0)
        toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(),
                      toy_train.config(stage, 2, grad_accum=2), run_dir=tmp_path / f"z{stage}", seed=0,
                      progress=False)
    _assert_same_tensors(_final(tmp_path / "z3", "model.safetensors"), _final(tmp_path / "z0", "model.safetensors"))


def test_max_minutes_stops_with_a_checkpoint_and_resume_finishes(tmp_path):
    # A budget that is over after the first step: the loop checkpoints that step and returns.
    cfg = toy_train.config(0, 6, max_minutes=1e-9)
    first = toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), cfg,
                          run_dir=tmp_path, seed=0, progress=False)
    assert first.time_limited and not first.preempted and first.final_step == 1
    assert ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(tmp_path)))["step"] == 1
    # Without a budget the same run resumes from that checkpoint and reaches max_steps.
    rest = toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), toy_train.config(0, 6),
                         run_dir=tmp_path, seed=0, progress=False, resume=True)
    assert rest.final_step == 6 and not rest.time_limited and len(rest.losses) == 5


def test_non_finite_loss_stops_before_any_checkpoint_of_it(tmp_path):
    inner = toy_train.make_loss()
    calls = {"n": 0}

    def loss_fn(net, batch, gen):
        calls["n"] += 1
        loss, logs = inner(net, batch, gen)
        return (loss * float("nan") if calls["n"] == 5 else loss), logs  # micro-step 5 = step 3

    with pytest.raises(MedidiffError, match="loss became nan at step 3"):
        toy_train.fit(toy_train.ToyNet(), loss_fn, toy_train.ToyData(), toy_train.config(0, 6, log_every=3),
                      run_dir=tmp_path, seed=0, progress=False)
    done = ckpt.list_complete(ckpt.checkpoint_root(tmp_path))
    assert [p.name for p in done] == ["step_00000002"]  # the checkpoint before the bad step only


def test_validation_never_runs_on_weights_from_a_non_finite_loss(tmp_path):
    inner = toy_train.make_loss()
    calls, validated = {"n": 0}, []

    def loss_fn(net, batch, gen):
        calls["n"] += 1
        loss, logs = inner(net, batch, gen)
        return (loss * float("nan") if calls["n"] == 5 else loss), logs  # step 3

    def val_fn(module, rank, world_size):
        validated.append(calls["n"] // 2)
        return {"loss": 0.0}, 1

    cfg = toy_train.config(0, 6, log_every=5, ckpt_every=10, val_every=2)
    with pytest.raises(MedidiffError, match="loss became nan at step 3"):
        toy_train.fit(toy_train.ToyNet(), loss_fn, toy_train.ToyData(), cfg, run_dir=tmp_path, seed=0,
                      progress=False, val_fn=val_fn)
    assert validated == [2]  # step 4's validation found the bad loss first and stopped the run


def test_resume_with_a_position_past_the_new_epoch_is_refused(tmp_path):
    # 12 items: 3 batches of 4 (2 x 2 accumulation) per epoch; after 1 step the position is batch 2
    toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), toy_train.config(0, 1),
                  run_dir=tmp_path, seed=0, progress=False)
    with pytest.raises(MedidiffError, match="micro_batch, the number of processes or the data set changed"):
        toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(),
                      toy_train.config(0, 4, micro_batch=6), run_dir=tmp_path, seed=0, progress=False, resume=True)


def test_resume_refuses_another_world_size_zero_stage_or_config(tmp_path):
    def toy(stage, steps, lr=1e-2, resume=False, run=tmp_path / "z0"):
        record = {"config": {"seed": 0, "train": {"lr": lr, "max_steps": steps}}}
        return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(),
                             toy_train.config(stage, steps, lr=lr), run_dir=run, seed=0, progress=False,
                             resume=resume, record=record)

    toy(0, 2)
    with pytest.raises(MedidiffError, match=r"with train.deepspeed=zero0, this run has 1 with train.deepspeed=zero2: "
                                            r"resume with train.deepspeed=zero0"):
        toy(2, 4, resume=True)
    with pytest.raises(MedidiffError, match=r"config differs .*train.lr: 0.01 -> 0.02"):
        toy(0, 4, lr=2e-2, resume=True)
    assert toy(0, 4, resume=True).final_step == 4  # a longer run (max_steps) is a resume, not a new config


def test_a_setting_added_after_the_checkpoint_resumes_at_its_default_only(tmp_path):
    # the checkpoint's record predates objective.edge_weight (a newer medidiff): the run trained as its default
    defaults = {"seed": 0, "objective": {"edge_weight": 1.0}, "train": {"lr": 1e-2, "max_steps": 2}}

    def toy(steps, config, resume=False):
        return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), toy_train.config(0, steps),
                             run_dir=tmp_path, seed=0, progress=False, resume=resume,
                             record={"config": config, "config_defaults": defaults})

    toy(2, {"seed": 0, "train": {"lr": 1e-2, "max_steps": 2}})  # written without the setting
    with pytest.raises(MedidiffError, match=r"config differs .*objective.edge_weight: 1.0 -> 3.0"):
        toy(4, {"seed": 0, "objective": {"edge_weight": 3.0}, "train": {"lr": 1e-2, "max_steps": 4}}, resume=True)
    assert toy(4, {"seed": 0, "objective": {"edge_weight": 1.0}, "train": {"lr": 1e-2, "max_steps": 4}},
               resume=True).final_step == 4


def test_a_zero2_run_resumes_on_another_number_of_processes_as_zero0_does(tmp_path):
    # 2 ranks x 2 micro-batches of 2 = 8 items per step; 12 items: after 1 step the epoch's first
    # 8 are used. One process (4 items per step) continues after them: batch 4 of that epoch.
    # ZeRO-0 holds the whole optimizer state; ZeRO-2's shards are re-cut through DeepSpeed's
    # universal checkpoint. Both continue the same run: the same losses, the same weights.
    for stage in (0, 2):
        run = tmp_path / f"z{stage}"
        _run([str(run), "--stage", str(stage), "--steps", "1"], torchrun=2)
        proc = _run([str(run), "--stage", str(stage), "--steps", "3", "--resume"])
        assert (f"resuming on 1 process(es) a train.deepspeed=zero{stage} checkpoint written by 2; the epoch continues "
                "after its first 8 items; the global batch is now 4 volumes (was 8)") in proc.stderr
        assert ("converting its ZeRO shards for 1" in proc.stderr) == (stage == 2)
        state = ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(run)))
        assert (state["step"], state["world_size"]) == (3, 1)
        assert not (ckpt.checkpoint_root(run) / "universal").exists()  # the converted copy is deleted
    l0, l2 = _losses(tmp_path / "z0"), _losses(tmp_path / "z2")
    assert sorted(l0) == sorted(l2) == [1, 2, 3]
    # module buffers come back too (the universal load restores parameters only): rank 0 ran 2
    # forwards before the checkpoint and 4 after it
    for stage in (0, 2):
        last = ckpt.latest_complete(ckpt.checkpoint_root(tmp_path / f"z{stage}"))
        state = torch.load(last / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        assert int(state["module"]["forwards"]) == 6, stage
    for step in l0:  # same maths; ZeRO-2 reduce-scatters where ZeRO-0 all-reduces
        assert l2[step] == pytest.approx(l0[step], rel=1e-5), step
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = _final(tmp_path / "z0", name), _final(tmp_path / "z2", name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("stage,before,after", [(3, 2, 1), (1, 1, 2)])
def test_zero_shards_resume_on_fewer_and_more_processes_as_zero0_does(tmp_path, stage, before, after):
    # ZeRO-3 also re-cuts the weights; ZeRO-1 going from 1 process to 2 (a requeue on more nodes).
    for s in (0, stage):
        run = tmp_path / f"z{s}"
        _run([str(run), "--stage", str(s), "--steps", "1"], torchrun=before if before > 1 else 0)
        _run([str(run), "--stage", str(s), "--steps", "3", "--resume"], torchrun=after if after > 1 else 0)
    l0, ls = _losses(tmp_path / "z0"), _losses(tmp_path / f"z{stage}")
    assert sorted(l0) == sorted(ls) == [1, 2, 3]
    for step in l0:
        assert ls[step] == pytest.approx(l0[step], rel=1e-5), step


def test_stream_sampler_continues_epochs_and_drops_each_epoch_tail():
    from medidiff.training.sampler import ResumableSampler, StreamSampler, derive_seed

    base = ResumableSampler(7, seed=3)
    stream = iter(StreamSampler(base, 2, epoch=0, position=0))
    keys = [next(stream) for _ in range(12)]  # 2 epochs of 3 batches of 2 (the 7th item dropped)
    assert [i for i, _ in keys[:6]] == base.epoch_order(0)[:6]
    assert [i for i, _ in keys[6:]] == base.epoch_order(1)[:6]
    assert all(s == derive_seed(3, e, i) for e, chunk in ((0, keys[:6]), (1, keys[6:])) for i, s in chunk)
    # a resumed stream (epoch 1, batch 1) yields exactly what the uninterrupted one yields there
    again = iter(StreamSampler(base, 2, epoch=1, position=1))
    assert [next(again) for _ in range(4)] == keys[8:12]


def test_workers_give_the_same_batches_and_augmentation(tmp_path):
    # The toy data flips at random: seeded per item, the loss curve is the same with 0 or 2 workers.
    _run([str(tmp_path / "w0"), "--steps", "4", "--workers", "0"])
    _run([str(tmp_path / "w2"), "--steps", "4", "--workers", "2"])
    assert _losses(tmp_path / "w0") == _losses(tmp_path / "w2")


def test_resume_after_sigkill_is_bitwise_equal(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run([str(full), "--steps", "8"])
    proc = _run([str(killed), "--steps", "8", "--kill-at-step", "6"], check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert ckpt.latest_complete(ckpt.checkpoint_root(killed)).name == "step_00000004"
    _run([str(killed), "--steps", "8", "--resume"])
    assert _losses(killed) == _losses(full)  # the same curve, step for step, bit for bit
    _assert_same_tensors(_final(killed, "model.safetensors"), _final(full, "model.safetensors"))
    _assert_same_tensors(_final(killed, "ema.safetensors"), _final(full, "ema.safetensors"))


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run([str(full), "--steps", "6"])
    proc = _run([str(killed), "--steps", "6", "--kill-in-save", "2"], check=False)
    assert proc.returncode == -9
    root = ckpt.checkpoint_root(killed)
    assert (root / "step_00000004").is_dir() and not ckpt.is_complete(root / "step_00000004")
    assert ckpt.latest_complete(root).name == "step_00000002"
    _run([str(killed), "--steps", "6", "--resume"])
    assert _losses(killed) == _losses(full)
    _assert_same_tensors(_final(killed, "ema.safetensors"), _final(full, "ema.safetensors"))
    # the half-written checkpoint was replaced by a complete one
    assert ckpt.is_complete(root / "step_00000004")


def test_zero3_ema_matches_zero0_with_two_processes(tmp_path):
    if shutil.which("torchrun") is None and not hasattr(torch.distributed, "run"):
        pytest.skip("torch.distributed.run unavailable")
    z0, z3 = tmp_path / "z0", tmp_path / "z3"
    # with accumulation: ZeRO-3 must average both micro-batches' gradients, as stage 0 does
    _run([str(z0), "--stage", "0", "--steps", "4", "--grad-accum", "2"], torchrun=2)
    _run([str(z3), "--stage", "3", "--steps", "4", "--grad-accum", "2"], torchrun=2)
    ema0, ema3 = _final(z0, "ema.safetensors"), _final(z3, "ema.safetensors")
    m0, m3 = _final(z0, "model.safetensors"), _final(z3, "model.safetensors")
    assert ema0.keys() == ema3.keys()
    for k in ema0:
        # same maths, different reduction order (sharded reduce-scatter vs all-reduce)
        torch.testing.assert_close(ema3[k], ema0[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m3[k], m0[k], rtol=1e-5, atol=1e-6)
        assert ema3[k].abs().sum() > 0  # not ZeRO-3 placeholders


def test_ema_of_sharded_bf16_masters_is_assembled_where_each_rank_keeps_its_pieces(tmp_path):
    # ZeRO-1/2 keep each rank's pieces of the fp32 masters; the EMA averages its own pieces and
    # assembles the whole at the checkpoint. With decay 0 the EMA is the masters, and the bf16
    # weights are the masters rounded: any piece put in the wrong place breaks the equality.
    # (One process holds every piece: test_ema_averages_the_fp32_master_weights_under_bf16.)
    _run([str(tmp_path), "--stage", "2", "--precision", "bf16", "--grad-accum", "1", "--steps", "2",
          "--ema-decay", "0"], torchrun=2)
    ema, model = _final(tmp_path, "ema.safetensors"), _final(tmp_path, "model.safetensors")
    assert ema.keys() == model.keys()
    for k in ema:
        assert ema[k].dtype == torch.float32 and model[k].dtype == torch.bfloat16
        assert torch.equal(ema[k].to(torch.bfloat16), model[k]), k
    # the fp32 masters, not the bf16 weights read back: finer than bf16 somewhere
    assert any(not torch.equal(ema[k], ema[k].to(torch.bfloat16).float()) for k in ema)


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    # Rank 0 alone gets SIGUSR1 in step 3; the ranks agree, checkpoint step 3 together and exit.
    # (Unagreed, rank 0 would wait in the checkpoint's barrier while rank 1 trains on.) They agree
    # every step: with log_every 50 the stop still comes at step 3, not at the next log step.
    proc = _run([str(tmp_path), "--steps", "8", "--grad-accum", "1", "--signal-rank0-at-step", "3",
                 "--log-every", "50"], torchrun=2)
    assert proc.returncode == 0
    assert ckpt.latest_complete(ckpt.checkpoint_root(tmp_path)).name == "step_00000003"
    assert sorted(_losses(tmp_path)) == [3]  # the stop step is logged whatever log_every is


def _sigterm_after_three_steps(cmd: list[str], run: Path, *, timeout: float, **env_extra: str
                               ) -> tuple[subprocess.Popen, str]:
    """``cmd`` in its own process session; once ``run`` has logged 3 steps, SIGTERM to the whole
    session (what torchrun and SLURM do: every process, loader workers included). Returns the
    finished process and its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "LOCAL_WORLD_SIZE"}}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **env_extra)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=timeout)
    finally:
        try:  # loader workers included
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc, err


def test_sigterm_to_the_process_group_with_loader_workers_checkpoints_and_exits_cleanly(tmp_path):
    # What torchrun and SLURM do: SIGTERM to every process of the job, loader workers included.
    cmd = [sys.executable, "-m", "tests.training.toy_train", str(tmp_path), "--steps", "100000", "--workers", "2",
           "--ckpt-every", "0", "--log-every", "1"]
    proc, err = _sigterm_after_three_steps(cmd, tmp_path, timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "killed by signal" not in err
    last = ckpt.latest_complete(ckpt.checkpoint_root(tmp_path))
    assert last is not None and ckpt.read_state(last)["step"] >= 3  # the stop's checkpoint, complete


@pytest.mark.slow
def test_torchrun_waits_for_a_checkpoint_slower_than_its_default_30_s_with_the_sbatch_setting(tmp_path):
    # torchrun forwards SIGTERM to its ranks and SIGKILLs them 30 s later (--shutdown-timeout): a
    # large model's checkpoint would be cut short. configs/slurm/train.sbatch raises the limit
    # through TORCH_ELASTIC_SHUTDOWN_TIMEOUT; here the same variable lets a 35 s save finish.
    sbatch = (REPO / "configs" / "slurm" / "train.sbatch").read_text()
    assert "export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-" in sbatch
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "tests.training.toy_train", str(tmp_path), "--steps", "100000", "--ckpt-every", "0", "--log-every", "1",
           "--grad-accum", "1", "--slow-save", "35"]
    _, err = _sigterm_after_three_steps(cmd, tmp_path, timeout=240, TORCH_ELASTIC_SHUTDOWN_TIMEOUT="120")
    last = ckpt.latest_complete(ckpt.checkpoint_root(tmp_path))
    assert last is not None and ckpt.read_state(last)["step"] >= 3, err[-3000:]  # the stop's checkpoint, complete


def test_previews_and_validation_under_zero3_on_two_ranks(tmp_path):
    # Rank 0 alone samples previews: through the ZeRO-3 engine that was a collective the other
    # rank never joined (a deadlock). Validation is split across the ranks and combined.
    _run([str(tmp_path), "--stage", "3", "--steps", "4", "--grad-accum", "1", "--preview-every", "2",
          "--val-every", "2"], torchrun=2, timeout=240)
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/item_sq" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert all(r["val/item_sq"] == 6.0 and r["val/loss"] > 0 for r in val)  # the mean over all 5 items


@pytest.mark.parametrize("stage", [0, 2])  # ZeRO-0: DeepSpeed's unfused fp16/bf16 optimizer keeps the masters
def test_ema_averages_the_fp32_master_weights_under_bf16(tmp_path, stage):
    from medidiff.training.ema import EMAConfig

    # decay 0: the EMA is the latest weights. From the bf16 module they would all be bf16 values;
    # from the optimizer's fp32 masters they are not.
    cfg = toy_train.config(stage, 2, grad_accum=1, precision="bf16", ema=EMAConfig(max_decay=0.0, warmup="none"))
    toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), cfg, run_dir=tmp_path, seed=0,
                  progress=False)
    ema, model = _final(tmp_path, "ema.safetensors"), _final(tmp_path, "model.safetensors")
    assert all(v.dtype == torch.float32 for v in ema.values()) and model["a.weight"].dtype == torch.bfloat16
    assert any(not torch.equal(v, v.bfloat16().float()) for v in ema.values())
    for k in ema:  # and the module's weights are those masters, rounded
        torch.testing.assert_close(ema[k].bfloat16(), model[k], rtol=0, atol=0)


def test_fp16_uses_deepspeed_dynamic_loss_scaling():
    from medidiff.config import ConfigError
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import resolve_deepspeed_config

    ds = resolve_deepspeed_config(TrainConfig(precision="fp16", deepspeed="zero2", grad_accum=2), 1)
    assert ds["fp16"]["enabled"] is True and ds["fp16"]["loss_scale"] == 0 and ds["bf16"]["enabled"] is False
    with pytest.raises(ConfigError, match="stage 0 with precision fp16"):
        resolve_deepspeed_config(TrainConfig(precision="fp16", deepspeed="zero0", grad_accum=2), 1)


@pytest.mark.parametrize("stage, precision, refused", [
    (0, "fp32", True), (0, "autocast-bf16", True), (1, "fp32", True), (1, "fp16", True), (1, "autocast-bf16", True),
    (1, "bf16", True),  # DeepSpeed's BF16_Optimizer zeroes .grad in place: the graph's tensor stays
    (2, "fp32", False), (2, "bf16", False), (3, "fp32", False)])
def test_cuda_graphs_with_accumulation_in_deepspeed_grads_are_refused_with_the_way_out(stage, precision, refused):
    from medidiff.config import ConfigError
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import resolve_deepspeed_config

    def resolve(**kw):
        return resolve_deepspeed_config(TrainConfig(deepspeed=f"zero{stage}", precision=precision, compile=True, **kw), 1)

    if refused:
        for mode in ("reduce-overhead", "max-autotune"):  # both capture CUDA graphs
            with pytest.raises(ConfigError, match=rf"ZeRO stage {stage} .*CUDA graphs.*train.deepspeed none"):
                resolve(grad_accum=2, compile_mode=mode)
    else:
        resolve(grad_accum=2, compile_mode="reduce-overhead")
    # without accumulation, or without CUDA graphs, nothing sums across graph replays
    resolve(grad_accum=1, compile_mode="reduce-overhead")
    resolve(grad_accum=2, compile_mode="max-autotune-no-cudagraphs")


def test_an_explicit_train_batch_size_is_checked_only_against_a_known_world_size(tmp_path):
    from medidiff.config import ConfigError
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import resolve_deepspeed_config

    path = tmp_path / "eight_gpus.json"  # micro-batch 2 x accumulation 1 x 8 processes
    path.write_text(json.dumps({"train_batch_size": 16, "zero_optimization": {"stage": 2}}))
    cfg = TrainConfig(deepspeed=str(path), micro_batch=2)
    assert resolve_deepspeed_config(cfg, 8)["train_batch_size"] == 16
    assert resolve_deepspeed_config(cfg, None)["train_batch_size"] == 16  # the CLI's early check: not known yet
    with pytest.raises(ConfigError, match="train_batch_size=16 conflicts"):
        resolve_deepspeed_config(cfg, 1)


def test_cuda_request_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(MedidiffError, match=r"train.device is 'cuda'.*--set train.device=cpu"):
        resolve_device("cuda")


def test_cuda_arch_list_suffixes_are_made_parseable():
    env = {"TORCH_CUDA_ARCH_LIST": "8.0;9.0a 9.0+PTX 10.0a+PTX"}
    assert sanitize_cuda_arch_list(env) == "8.0 9.0 9.0+PTX 10.0+PTX"
    assert sanitize_cuda_arch_list({"TORCH_CUDA_ARCH_LIST": "8.0 9.0"}) is None
    assert sanitize_cuda_arch_list({}) is None


@pytest.mark.parametrize("name", ["zero0", "zero1", "zero2", "zero3", "zero2_offload"])
def test_builtin_deepspeed_configs_equal_the_shipped_json(name):
    from medidiff.training.engine import builtin_deepspeed_config

    assert builtin_deepspeed_config(name) == json.loads((REPO / "configs" / "deepspeed" / f"{name}.json").read_text())


def test_unknown_deepspeed_config_name_is_a_clear_error():
    from medidiff.config import ConfigError
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import resolve_deepspeed_config

    with pytest.raises(ConfigError, match="built-in"):
        resolve_deepspeed_config(TrainConfig(deepspeed="zero5"), 1)
    with pytest.raises(ConfigError, match="not found"):
        resolve_deepspeed_config(TrainConfig(deepspeed="nope/x.json"), 1)


def test_logged_sub_losses_are_means_over_the_window_not_sums(tmp_path):
    # a loss_fn's extra logs (the per-band losses of a diffusion model) are summed on the device
    # step by step; a log line over 4 steps must report their mean, as "loss" does
    inner = toy_train.make_loss()

    def loss_fn(net, batch, gen):
        loss, _ = inner(net, batch, gen)
        return loss, {"device": torch.tensor(0.25), "host": 0.5}

    toy_train.fit(toy_train.ToyNet(), loss_fn, toy_train.ToyData(), toy_train.config("none", 8, log_every=4),
                  run_dir=tmp_path, seed=0, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss/device" in r]
    assert [r["step"] for r in rows] == [4, 8]
    for r in rows:
        assert r["loss/device"] == pytest.approx(0.25) and r["loss/host"] == pytest.approx(0.5)
