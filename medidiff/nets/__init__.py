"""Denoiser networks: one architecture per file, a plain registry, and ``build_net``.

Every net has the same forward signature::

    net(x, t, *, cond_image=None, class_labels=None, scalars=None, scalars_mask=None,
        context=None, context_mask=None) -> (B, C_out, D, H, W)
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from medidiff.nets.config import NetConfig
from medidiff.nets.monai_unet import MonaiUNet
from medidiff.nets.unet3d import UNet3D

__all__ = ["NetConfig", "UNet3D", "MonaiUNet", "NETS", "build_net", "count_parameters"]

NETS: dict[str, Callable[[NetConfig], nn.Module]] = {"unet3d": UNet3D, "monai": MonaiUNet}


def build_net(cfg: NetConfig) -> nn.Module:
    """Instantiate the denoiser named by ``cfg.type``."""
    try:
        return NETS[cfg.type](cfg)
    except KeyError:
        raise ValueError(f"net.type {cfg.type!r} unknown; choose one of {sorted(NETS)}") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared tensors are counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
