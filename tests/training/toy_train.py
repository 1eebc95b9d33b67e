"""A tiny training job for the engine tests (run in-process, as a subprocess, or by torchrun).

    python -m tests.training.toy_train RUN_DIR [--stage S] [--steps N] [--resume]
        [--kill-at-step K] [--kill-in-save K]

--kill-at-step K sends SIGKILL to itself during step K (after its forward); --kill-in-save K
does so in the middle of writing the K-th checkpoint (after DeepSpeed's shards, before
COMPLETE). Both simulate a pre-empted node. --slow-save S makes every save take S seconds more
(a large model on slow storage).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from medidiff.training.config import TrainConfig
from medidiff.training.loop import fit


class ToyData(Dataset):
    """Random volumes with a random left-right flip in ``.transform`` (like a MONAI dataset)."""

    def __init__(self, n: int = 12, *, flip: bool = True) -> None:
        from monai.transforms import Compose, RandFlipd

        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 2, 8, 8, 8, generator=g)
        # flip=False: the same items every epoch (what train.data_on_device needs)
        self.transform = Compose([RandFlipd("image", prob=0.5, spatial_axis=0)] if flip else [])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        y = self.transform({"image": self.x[i]})["image"]
        return {"image": y.as_tensor() if hasattr(y, "as_tensor") else y}  # MetaTensor -> Tensor


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(2, 8, 3, padding=1)
        self.drop = nn.Dropout(0.1)  # exercises the global RNG
        self.b = nn.Conv3d(8, 2, 3, padding=1)
        # a persistent buffer, as the VAE trainer's micro-step counter: resumes must restore it
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.forwards += 1
        out_dtype = x.dtype
        x = x.to(self.a.weight.dtype)  # as medidiff's nets do: bf16 weights run without autocast
        return self.b(self.drop(torch.nn.functional.silu(self.a(x)))).to(out_dtype)


def make_loss(kill_at_call: int | None = None):
    calls = {"n": 0}

    def loss_fn(net: nn.Module, batch: dict, gen: torch.Generator):
        calls["n"] += 1
        x = batch["image"]
        noise = torch.randn(x.shape, generator=gen, device=x.device)
        out = net(x + 0.5 * noise)
        per_channel = (out - x).float().pow(2).mean(dim=(0, 2, 3, 4))
        if kill_at_call is not None and calls["n"] == kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return per_channel.mean(), {f"c{i}": float(v) for i, v in enumerate(per_channel.detach())}

    return loss_fn


def config(stage: int | str, steps: int, **kw) -> TrainConfig:
    """A DeepSpeed ZeRO ``stage`` (0-3, its shipped JSON), or ``"none"``: the plain-PyTorch engine."""
    ds = "none" if stage == "none" else str(Path(__file__).resolve().parents[2] / "configs" / "deepspeed" / f"zero{stage}.json")
    base = dict(max_steps=steps, micro_batch=2, grad_accum=2, lr=1e-2, warmup_steps=2, precision="fp32",
                deepspeed=ds, device="cpu", ckpt_every=2, keep_last=2, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--stage", type=lambda v: v if v == "none" else int(v), default=0, help="0-3, or none (plain PyTorch)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kill-at-step", type=int)
    p.add_argument("--kill-in-save", type=int)
    p.add_argument("--slow-save", type=float, help="seconds every save takes before COMPLETE (a large model)")
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--precision", default="fp32", help="train.precision (bf16: bf16 weights, fp32 masters)")
    p.add_argument("--ema-decay", type=float, help="a constant EMA decay (0: the EMA is the fp32 masters)")
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--preview-every", type=int, default=0, help="rank 0 runs the net on one item and saves it")
    p.add_argument("--val-every", type=int, default=0, help="validate on 5 items, split across ranks")
    p.add_argument("--ckpt-every", type=int, default=2)
    p.add_argument("--signal-rank0-at-step", type=int, help="rank 0 alone gets SIGUSR1 during this step")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    net = ToyNet()
    cfg = config(args.stage, args.steps, grad_accum=args.grad_accum, log_every=args.log_every, precision=args.precision,
                 ckpt_every=args.ckpt_every, preview_every=args.preview_every, val_every=args.val_every)
    if args.ema_decay is not None:
        from medidiff.training.ema import EMAConfig

        cfg.ema = EMAConfig(max_decay=args.ema_decay, warmup="none")
    kill_call = None if args.kill_at_step is None else (args.kill_at_step - 1) * cfg.grad_accum + 1
    if args.kill_in_save is not None:
        from medidiff.training import checkpoint as ckpt

        original, count = ckpt.mark_complete, {"n": 0}

        def dying_mark_complete(directory, state):
            count["n"] += 1
            if count["n"] == args.kill_in_save:
                os.kill(os.getpid(), signal.SIGKILL)
            original(directory, state)

        ckpt.mark_complete = dying_mark_complete
    if args.slow_save:
        import time

        from medidiff.training import checkpoint as ckpt

        plain_mark = ckpt.mark_complete

        def slow_mark_complete(directory, state):
            time.sleep(args.slow_save)
            plain_mark(directory, state)

        ckpt.mark_complete = slow_mark_complete
    loss_fn = make_loss(kill_call)
    if args.signal_rank0_at_step is not None and int(os.environ.get("RANK", "0")) == 0:
        inner, calls = loss_fn, {"n": 0}
        signal_call = (args.signal_rank0_at_step - 1) * cfg.grad_accum + 1

        def loss_fn(net, batch, gen):  # noqa: F811 - wraps the plain loss
            calls["n"] += 1
            if calls["n"] == signal_call:
                os.kill(os.getpid(), signal.SIGUSR1)
            return inner(net, batch, gen)

    fit(net, loss_fn, ToyData(), cfg, run_dir=args.run_dir, seed=7, resume=args.resume,
        record={"toy": True}, progress=False, num_workers=args.workers, preview_fn=preview, val_fn=val)


def preview(step: int, module: nn.Module, out_dir: Path) -> None:
    """What a sampling preview does: forward passes on rank 0 alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        y = module(ToyData().x[:1])
    torch.save(y, out_dir / f"step_{step:08d}.pt")


def val(module: nn.Module, rank: int, world_size: int) -> tuple[dict[str, float], int]:
    """Items 0..4 split across ranks; ``item_sq`` averages to 6 over all of them (rank 0's share
    alone to 6.67), ``loss`` is the EMA net's error on them."""
    data = ToyData(5)
    sums, n = {"item_sq": 0.0, "loss": 0.0}, 0
    with torch.no_grad():
        for i in range(rank, 5, world_size):
            sums["item_sq"] += float(i * i)
            sums["loss"] += float((module(data.x[i:i + 1]) - data.x[i:i + 1]).pow(2).mean())
            n += 1
    return sums, n


if __name__ == "__main__":
    from medidiff.training.engine import exit_distributed

    main()
    raise SystemExit(exit_distributed(0))  # as `medidiff train` leaves a torchrun rank
