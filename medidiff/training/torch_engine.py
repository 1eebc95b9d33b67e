"""The plain-PyTorch engine (``train.deepspeed: none``): what a one-GPU run needs, without DeepSpeed.

On one H200 the DeepSpeed engine cost the loop most of its speed (issue 15,
benchmarks/results/loop_h200_20261130): ~5000 kernel launches and 480-620 device copies a step
under ZeRO-2, per-parameter gradient-norm kernels, host synchronisations and ~18 ms of host time
in ``engine.step()``. ZeRO partitions optimizer state across ranks; on one process there is
nothing to partition, so this engine does the same work with fused kernels and no host sync:

* fused AdamW, the warm-up/cosine schedule of :func:`~medidiff.training.engine.lr_lambda`;
* gradient clipping by the global norm with torch's multi-tensor norm (the same rule as
  DeepSpeed's: scale by ``clip / (norm + 1e-6)`` when that is below 1), computed on the device;
* precision ``bf16``: bf16 weights in the module, run without autocast, fp32 master copies in the
  optimizer, gradients accumulated in fp32 across micro-batches (as DeepSpeed's bf16 mode with
  ``grad_accum_dtype`` fp32); ``autocast-bf16`` and ``fp32``: fp32 weights. fp16 needs DeepSpeed's loss scaling and is
  refused here;
* several processes: DistributedDataParallel, gradients all-reduced once per accumulation window.
  Every rank holds the whole optimizer state, so a checkpoint resumes on any process count.

It offers the part of the DeepSpeed engine's surface that :func:`~medidiff.training.loop.fit`
uses (call, ``backward``, ``step``, ``module``, ``get_lr``, ``train``, ``compile``), and saves its
state as safetensors + JSON: nothing pickled, nothing to unpickle on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medidiff.errors import MedidiffError
from medidiff.training import checkpoint as ckpt
from medidiff.training.config import TrainConfig

__all__ = ["TorchEngine", "STATE_TENSORS", "STATE_JSON"]

STATE_TENSORS = "engine_state.safetensors"  # module state, optimizer moments, fp32 masters
STATE_JSON = "engine_state.json"  # optimizer hyperparameters, schedule, micro-step count
_FORMAT = 1


class TorchEngine:
    """AdamW + schedule + clipping around ``model`` (already on its device), DDP over ranks > 1."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, schedule: Any, rank: int, world_size: int,
                 device: torch.device) -> None:
        if cfg.precision == "fp16":
            raise MedidiffError("train.precision fp16 with train.deepspeed none: fp16 needs DeepSpeed's dynamic loss "
                                "scaling; use precision bf16 or autocast-bf16, or train.deepspeed zero0..zero3")
        self.module = model
        self.cfg = cfg
        self.rank = rank
        self._micro = 0  # micro-steps taken; a window closes every grad_accum of them
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise MedidiffError("the model has no trainable parameters")
        self.bf16 = cfg.precision == "bf16"
        self.device_type = device.type
        if self.bf16:
            self.masters = [p.detach().float().clone() for p in self.params]
            self.module.to(torch.bfloat16)  # after the masters: they keep the fp32 initial values
            self._master_grads = [torch.zeros_like(m) for m in self.masters]
            for m, g in zip(self.masters, self._master_grads):
                m.grad = g
            opt_params = self.masters
        else:
            self.masters, opt_params = [], self.params
            # Gradients live in tensors of their own from the start and are zeroed, not dropped: with
            # set_to_none the first backward of a window would keep its output as .grad, and under CUDA
            # graphs (compile_mode reduce-overhead) that output is graph memory the next micro-batch's
            # backward overwrites ("accessing tensor output of CUDAGraphs that has been overwritten",
            # grad_accum 2 on one H200, tests/training/test_compiled_resume_gpu.py). 0 + g == g: the
            # eager loss curves are unchanged bit for bit. A parameter without a gradient in a window now
            # steps on a zero one, as under bf16, whose fp32 sums already hold one for every parameter.
            for p in self.params:
                p.grad = torch.zeros_like(p)
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(opt_params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                           **({"fused": True} if fused else {}))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self._forward: Any = self.ddp if self.ddp is not None else model

    # ---- the training surface fit uses -------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.ddp is not None:  # all-reduce only on the backward that closes the window
            self.ddp.require_backward_grad_sync = (self._micro + 1) % self.cfg.grad_accum == 0
        if self.bf16:
            # bf16 weights run in bf16 without autocast, as in DeepSpeed's bf16 engine (it disables an
            # outer autocast around the module) and the net-alone benchmark: medidiff's nets cast
            # their inputs to their weights' dtype. Under autocast, GroupNorm and friends ran in fp32
            # and every skip concatenation mixed dtypes: 631 copy kernels a step on one H200
            # (benchmarks/results/loop_h200_plain_20261130, shipped_none).
            with torch.autocast(self.device_type, enabled=False):
                return self._forward(*args, **kwargs)
        return self._forward(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """The mean over the window's micro-batches, as DeepSpeed's ``backward`` scales it."""
        (loss / self.cfg.grad_accum if self.cfg.grad_accum > 1 else loss).backward()
        if self.bf16:  # bf16 gradients into the fp32 window sum (bf16 sums diverge: DeepSpeed #2768)
            grads = [p.grad for p in self.params]
            with torch.no_grad():  # multi-tensor ops: a few kernels, not one per parameter
                if self._micro % self.cfg.grad_accum == 0:
                    torch._foreach_copy_(self._master_grads, grads)
                else:
                    torch._foreach_add_(self._master_grads, grads)
            for p in self.params:
                p.grad = None

    def step(self) -> None:
        """Called after every micro-batch; the optimizer steps when the window closes."""
        self._micro += 1
        if self._micro % self.cfg.grad_accum:
            return
        opt_params = self.masters if self.bf16 else self.params
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(opt_params, self.cfg.grad_clip)  # on the device: no host sync
        self.optimizer.step()
        self.scheduler.step()
        if self.bf16:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.masters)  # cast back into the module's bf16 weights
        else:
            self.optimizer.zero_grad(set_to_none=False)

    def get_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def train(self, mode: bool = True) -> TorchEngine:
        self.module.train(mode)
        return self

    def compile(self, compile_kwargs: dict[str, Any] | None = None) -> None:
        self._forward = torch.compile(self._forward, **(compile_kwargs or {}))

    def fp32_parameters(self) -> list[torch.Tensor]:
        """What training moves at full precision (the EMA averages these): the masters under bf16."""
        return self.masters if self.bf16 else self.params

    # ---- checkpoints: safetensors + JSON -----------------------------------------------------

    def save(self, directory: Path) -> None:
        """Rank 0 writes the whole state (every rank holds the same); the others write nothing."""
        if self.rank != 0:
            return
        directory.mkdir(parents=True, exist_ok=True)
        opt = self.optimizer.state_dict()
        tensors = {f"module/{k}": v for k, v in self.module.state_dict().items()}
        extra = {}
        for i, state in opt["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer/{i}/{key}"] = value
                else:
                    extra[f"{i}/{key}"] = value
        for i, m in enumerate(self.masters):
            tensors[f"master/{i}"] = m
        sched = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        ckpt.save_tensors(directory / STATE_TENSORS, tensors)
        ckpt.write_atomic(directory / STATE_JSON, json.dumps(
            {"format": _FORMAT, "precision": self.cfg.precision, "micro_steps": self._micro, "param_groups": opt["param_groups"],
             "optimizer_extra": extra, "scheduler": sched}, indent=2, sort_keys=True))

    def load(self, directory: Path) -> None:
        """Every rank reads rank 0's files; a file of another model or precision is refused by name."""
        tensors_path, json_path = directory / STATE_TENSORS, directory / STATE_JSON
        try:
            meta = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MedidiffError(f"{json_path}: unreadable engine state ({exc}): was this checkpoint written "
                                "with train.deepspeed none?") from None
        if meta.get("format") != _FORMAT or meta.get("precision") != self.cfg.precision:
            raise MedidiffError(f"{json_path}: engine state of format {meta.get('format')} / precision "
                                f"{meta.get('precision')}; this run has format {_FORMAT} / {self.cfg.precision}")
        tensors = ckpt.load_tensors(tensors_path)
        module_state = {k[len("module/"):]: v for k, v in tensors.items() if k.startswith("module/")}
        try:
            self.module.load_state_dict(module_state, strict=True)
        except RuntimeError as exc:
            raise MedidiffError(f"{tensors_path}: does not fit this model ({str(exc).splitlines()[0]})") from None
        if len([k for k in tensors if k.startswith("master/")]) != len(self.masters):
            raise MedidiffError(f"{tensors_path}: {len(self.masters)} fp32 master tensors expected")
        with torch.no_grad():
            for i, m in enumerate(self.masters):
                m.copy_(tensors[f"master/{i}"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, i, name = key.split("/", 2)
                state.setdefault(int(i), {})[name] = value
        for key, value in meta["optimizer_extra"].items():
            i, name = key.split("/", 1)
            state.setdefault(int(i), {})[name] = value
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(groups)})
        self._micro = int(meta["micro_steps"])
