"""A compiled run on a GPU (what the anatomy recipe ships: torch.compile with CUDA graphs, items held
on the device) stops, resumes from its checkpoint and follows the loss curve of the run that never
stopped. The CPU suite covers resumes of the eager loop bit for bit; this covers what only a GPU
runs: the compiled net (and its CUDA graphs) rebuilt around weights and optimizer state loaded back."""

from __future__ import annotations

import pytest
import torch

from medidiff.training import checkpoint as ckpt
from tests.training import toy_train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _fit(run_dir, steps, mode, accum, precision, *, resume=False, engine="none"):
    # a constant rate: a cosine schedule's rates depend on max_steps, which the first part changes
    cfg = toy_train.config(engine, steps, device="cuda", compile=True, compile_mode=mode, data_on_device=True,
                           lr_schedule="constant", ckpt_every=3, grad_accum=accum, precision=precision)
    torch.manual_seed(0)  # the same initial weights in every run
    return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(flip=False), cfg,
                         run_dir=run_dir, seed=7, resume=resume, progress=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_a_compiled_run_resumes_on_the_gpu_along_the_uninterrupted_loss_curve(tmp_path, mode, accum, precision):
    _stop_resume_and_compare(tmp_path, mode, accum, precision, "none")


# ZeRO-2 copies each micro-batch's gradients into its own buckets: passed on one H200 (2026-12-02). ZeRO-0 sums
# them in .grad as the plain engine did before its fix and stopped at the first step there: that combination is
# refused since (test_loop.py::test_cuda_graphs_with_accumulation_in_deepspeed_grads_are_refused_with_the_way_out)
@pytest.mark.parametrize("stage", [2, 3])
def test_a_graphed_deepspeed_run_with_accumulation_resumes_on_the_gpu(tmp_path, stage):
    # ZeRO-3 partitions the parameters as well and gathers them around each forward, under CUDA graphs and
    # accumulation: passed on one H200 (2026-12-04, torch 2.11.0+cu130, DeepSpeed 0.19.8; 8 s), beside ZeRO-2 and
    # the rest of `-m gpu` but tests/test_bundle.py (jsonschema is not in the GPU image)
    _stop_resume_and_compare(tmp_path, "reduce-overhead", 2, "fp32", stage)


def _stop_resume_and_compare(tmp_path, mode, accum, precision, engine):
    whole = _fit(tmp_path / "whole", 10, mode, accum, precision, engine=engine)
    first = _fit(tmp_path / "split", 4, mode, accum, precision, engine=engine)  # stops at 4 (checkpoints at 3, 4)
    assert first.final_step == 4
    assert ckpt.read_state(ckpt.latest_complete(ckpt.checkpoint_root(tmp_path / "split")))["step"] == 4
    rest = _fit(tmp_path / "split", 10, mode, accum, precision, resume=True, engine=engine)
    assert rest.final_step == 10 and len(rest.losses) == 6
    # the same kernels on the same batches: equal up to the GPU's reduction order (the eager CPU
    # resume is bit for bit, tests/training/test_loop.py); a resume that lost the optimizer's moments
    # or restarted the data order would differ by far more than this over six steps at lr 1e-2
    torch.testing.assert_close(torch.tensor(first.losses + rest.losses), torch.tensor(whole.losses),
                               rtol=1e-3, atol=1e-6)
    assert all(torch.isfinite(torch.tensor(rest.losses)))
