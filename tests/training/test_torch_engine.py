"""The plain-PyTorch engine (``train.deepspeed: none``): the same training as DeepSpeed's ZeRO-0,
exact resume from safetensors + JSON, fp32 masters and fp32 gradient sums under bf16, DDP on two
processes, and clear refusals."""

from __future__ import annotations

import json

import pytest
import torch

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.ema import EMAConfig
from medidiff.training.torch_engine import STATE_JSON, STATE_TENSORS, TorchEngine
from tests.training import toy_train
from tests.training.test_loop import _assert_same_tensors, _final, _losses, _run


def _fit(run, stage, steps, **kw):
    torch.manual_seed(0)
    return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(),
                         toy_train.config(stage, steps, **kw), run_dir=run, seed=0, progress=False)


def test_plain_engine_trains_like_zero0_with_accumulation_and_clipping(tmp_path):
    # Same AdamW, schedule, loss scaling over the window and clipping rule: the same weights up to
    # the order of floating-point sums (DeepSpeed sums the squared norms per parameter).
    for stage in (0, "none"):
        _fit(tmp_path / str(stage), stage, 4, grad_accum=2, grad_clip=0.05)  # a clip that bites
    plain, zero0 = _final(tmp_path / "none", "model.safetensors"), _final(tmp_path / "0", "model.safetensors")
    start = toy_train.ToyNet().state_dict()
    for k in plain:
        torch.testing.assert_close(plain[k], zero0[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(plain[k], start[k])  # it trained
    assert _losses(tmp_path / "none") == pytest.approx(_losses(tmp_path / "0"), rel=1e-5)


def test_plain_checkpoint_is_safetensors_and_json_only(tmp_path):
    _fit(tmp_path, "none", 2)
    last = ckpt.latest_complete(ckpt.checkpoint_root(tmp_path))
    assert sorted(p.name for p in last.iterdir()) == sorted(
        ["COMPLETE", "state.json", "model.safetensors", "ema.safetensors", STATE_TENSORS, STATE_JSON])
    state = ckpt.read_state(last)
    assert state["zero_stage"] is None
    meta = json.loads((last / STATE_JSON).read_text())
    assert meta["micro_steps"] == 4 and meta["scheduler"]["last_epoch"] == 2
    # every log line says how much of its wall time went to waiting for batches
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(0.0 <= r["data_wait_share"] <= 1.0 for r in rows)


def test_plain_resume_after_sigkill_is_bitwise_equal(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run([str(full), "--stage", "none", "--steps", "6"])
    proc = _run([str(killed), "--stage", "none", "--steps", "6", "--kill-at-step", "4"], check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert ckpt.latest_complete(ckpt.checkpoint_root(killed)).name == "step_00000002"
    _run([str(killed), "--stage", "none", "--steps", "6", "--resume"])
    assert _losses(killed) == _losses(full)
    _assert_same_tensors(_final(killed, "model.safetensors"), _final(full, "model.safetensors"))
    _assert_same_tensors(_final(killed, "ema.safetensors"), _final(full, "ema.safetensors"))
    _assert_same_tensors(_final(killed, STATE_TENSORS), _final(full, STATE_TENSORS))  # moments too


def test_bf16_keeps_fp32_masters_and_the_ema_averages_them(tmp_path):
    cfg = dict(grad_accum=1, precision="bf16", ema=EMAConfig(max_decay=0.0, warmup="none"))
    _fit(tmp_path, "none", 2, **cfg)
    ema, model = _final(tmp_path, "ema.safetensors"), _final(tmp_path, "model.safetensors")
    assert all(v.dtype == torch.float32 for v in ema.values()) and model["a.weight"].dtype == torch.bfloat16
    assert any(not torch.equal(v, v.bfloat16().float()) for v in ema.values())  # not bf16 values
    for k in ema:  # the module's weights are the masters, rounded
        torch.testing.assert_close(ema[k].bfloat16(), model[k], rtol=0, atol=0)


def test_bf16_gradients_are_summed_in_fp32_over_the_window():
    from medidiff.training.engine import lr_lambda
    from medidiff.training.config import TrainConfig

    torch.manual_seed(0)
    net, cfg = toy_train.ToyNet(), TrainConfig(precision="bf16", grad_accum=2, deepspeed="none", device="cpu")
    reference = toy_train.ToyNet()
    engine = TorchEngine(net, cfg, lr_lambda(cfg), 0, 1, torch.device("cpu"))
    reference.load_state_dict(net.state_dict())  # the same bf16 weights
    reference.eval(), net.eval()  # no dropout: both see the same function
    xs = [torch.randn(2, 2, 8, 8, 8) for _ in range(2)]
    expected = [torch.zeros_like(m) for m in engine.masters]
    for i, x in enumerate(xs):
        if i:
            engine.step()  # the loop's call after micro-batch 0: inside the window, no update
        with torch.autocast("cpu", dtype=torch.bfloat16):
            engine.backward(engine(x).float().square().mean())
            reference.zero_grad()
            (reference(x).float().square().mean() / 2).backward()
        for e, p in zip(expected, reference.parameters()):
            e += p.grad.float()  # each bf16 gradient, summed in fp32
    for got, want in zip(engine._master_grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert all(p.grad is None for p in engine.params)  # nothing left to sum in bf16


def test_plain_engine_on_two_processes_matches_zero0_and_resumes_on_one(tmp_path):
    z0, plain = tmp_path / "z0", tmp_path / "none"
    _run([str(z0), "--stage", "0", "--steps", "2", "--grad-accum", "2"], torchrun=2)
    _run([str(plain), "--stage", "none", "--steps", "2", "--grad-accum", "2"], torchrun=2)
    a, b = _final(plain, "model.safetensors"), _final(z0, "model.safetensors")
    for k in a:  # DDP's all-reduce averages as DeepSpeed's ZeRO-0 does
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # every rank holds the whole state: one process continues the two-process run
    proc = _run([str(plain), "--stage", "none", "--steps", "3", "--resume"])
    assert "a train.deepspeed=none checkpoint written by 2" in proc.stderr
    state = ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(plain)))
    assert (state["step"], state["world_size"]) == (3, 1)


def test_refusals_name_the_problem(tmp_path):
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import lr_lambda

    with pytest.raises(MedidiffError, match="fp16 with train.deepspeed none: fp16 needs DeepSpeed's dynamic loss"):
        TorchEngine(toy_train.ToyNet(), TrainConfig(precision="fp16", deepspeed="none"), lambda s: 1.0, 0, 1,
                    torch.device("cpu"))
    # a plain checkpoint is not resumed by a DeepSpeed engine, nor the other way round
    _fit(tmp_path, "none", 2)
    with pytest.raises(MedidiffError, match=r"with train.deepspeed=none, this run has 1 with train.deepspeed=zero2"):
        toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), toy_train.config(2, 4),
                      run_dir=tmp_path, seed=0, progress=False, resume=True)
    # a state file of another precision is refused by name before anything is loaded
    cfg = TrainConfig(precision="bf16", deepspeed="none", device="cpu")
    engine = TorchEngine(toy_train.ToyNet(), cfg, lr_lambda(cfg), 0, 1, torch.device("cpu"))
    last = ckpt.latest_complete(ckpt.checkpoint_root(tmp_path))
    with pytest.raises(MedidiffError, match=rf"{STATE_JSON}: engine state of format 1 / precision fp32"):
        engine.load(last)


@pytest.mark.parametrize("precision, inside", [("bf16", False), ("autocast-bf16", True)])
def test_bf16_weights_run_without_the_outer_autocast(precision, inside):
    # As DeepSpeed's bf16 engine: bf16 weights run in bf16 (the nets cast their inputs); under an
    # outer autocast, norms ran in fp32 and skip concatenations mixed dtypes (631 copies a step).
    from medidiff.training.config import TrainConfig
    from medidiff.training.engine import lr_lambda

    seen = []
    net = toy_train.ToyNet()
    net.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    cfg = TrainConfig(precision=precision, deepspeed="none", device="cpu")
    engine = TorchEngine(net, cfg, lr_lambda(cfg), 0, 1, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = engine(torch.randn(1, 2, 8, 8, 8))
    assert seen == [inside] and out.shape == (1, 2, 8, 8, 8)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_gradient_the_backward_produced_outlives_its_micro_step(precision):
    # Under CUDA graphs (compile_mode reduce-overhead) a backward's outputs are graph memory that the
    # next micro-batch's backward overwrites: a .grad that kept one broke grad_accum 2 on one H200
    # (tests/training/test_compiled_resume_gpu.py). The engine sums into tensors of its own instead.
    torch.manual_seed(0)
    net = toy_train.ToyNet()
    engine = TorchEngine(net, toy_train.config("none", 2, grad_accum=2, precision=precision), lambda step: 1.0,
                         rank=0, world_size=1, device=torch.device("cpu"))
    owned = {id(g) for g in (engine._master_grads if engine.bf16 else [p.grad for p in engine.params])}
    x = toy_train.ToyData().x[:2]
    for _ in range(4):  # two windows of two micro-batches
        engine.backward((engine(x) - x).float().pow(2).mean())
        held = engine._master_grads if engine.bf16 else [p.grad for p in engine.params]
        assert {id(g) for g in held} == owned  # summed in place, never replaced by the backward's output
        if engine.bf16:  # the bf16 weights' gradients are copied out and dropped at once
            assert all(p.grad is None for p in engine.params)
        engine.step()
