"""Conditioning embeddings shared by the denoisers: time, class (with a CFG null) and scalars."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "append_dims",
    "timestep_embedding",
    "TimestepEmbedding",
    "ClassEmbedding",
    "ScalarEmbedding",
]


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample ``v`` (B, ...) broadcasts against rank ``ndim``."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) times (Transformer/ADM, arXiv:1706.03762).

    t: (B,) float in the DDPM step range [0, 1000) or so, as the objectives pass it; times in
    [0, 1] must be scaled up first (``NetConfig.time_scale``) or the frequencies, spread over
    periods 2 pi to 2 pi 10^4, cannot separate nearby times. Returns (B, dim) float32 (computed in fp32: bf16
    cannot resolve t=999 vs t=1000).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )  # (half,)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """t (B,) -> (B, emb_dim): sinusoid of ``t * time_scale`` then a 2-layer SiLU MLP (ADM)."""

    def __init__(self, freq_dim: int, emb_dim: int, time_scale: float = 1.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_scale = float(time_scale)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: Tensor) -> Tensor:
        if t.ndim == 0:
            raise ValueError("t must have shape (B,), got a scalar: pass t.expand(batch)")
        if t.ndim != 1:
            raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
        emb = timestep_embedding(t * self.time_scale, self.freq_dim)  # (B, F) fp32
        w = self.mlp[0].weight
        return self.mlp(emb.to(w.dtype))  # (B, E)


class ClassEmbedding(nn.Module):
    """Class labels (B,) long -> (B, emb_dim), with index ``num_classes`` as the learned null class.

    Classifier-free guidance (Ho & Salimans, arXiv:2207.12598) drops labels by setting them to
    ``num_classes``; the null row is trained like any other, so there are num_classes + 1 rows.
    """

    def __init__(self, num_classes: int, emb_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, emb_dim)

    @property
    def null_index(self) -> int:
        return self.num_classes

    def forward(self, labels: Tensor) -> Tensor:
        if labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"class_labels must be (B,) integer, got {tuple(labels.shape)} {labels.dtype}")
        return self.table(labels.long())  # (B, E)


class ScalarEmbedding(nn.Module):
    """Per-sample scalars (B, S) -> (B, emb_dim) through an MLP that also sees which are present.

    A scalar is missing (or dropped for classifier-free guidance) where ``mask`` is False or the
    value is NaN. The MLP input is ``[value * keep, keep]`` (2S), so "missing" is learned per
    scalar rather than confused with the value 0, and all-dropped is a learned null embedding.
    """

    def __init__(self, num_scalars: int, emb_dim: int) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.mlp = nn.Sequential(nn.Linear(2 * num_scalars, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, scalars: Tensor, mask: Tensor | None = None) -> Tensor:
        """scalars: (B, S) float; mask: (B, S) or (B,) bool, True = keep (default: not NaN)."""
        if scalars.ndim != 2 or scalars.shape[1] != self.num_scalars:
            raise ValueError(f"scalars must be (B, {self.num_scalars}), got {tuple(scalars.shape)}")
        keep = ~torch.isnan(scalars)
        if mask is not None:
            keep = keep & append_dims(mask.bool(), 2)  # (B, S)
        w = self.mlp[0].weight
        values = torch.where(keep, scalars, torch.zeros_like(scalars))
        inp = torch.cat([values, keep.to(values.dtype)], dim=1).to(w.dtype)  # (B, 2S)
        return self.mlp(inp)  # (B, E)
