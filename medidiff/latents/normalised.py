"""The part every codec shares: per-latent-channel normalisation fitted on data.

A codec computes *raw* latents (wavelet coefficients, VAE posterior means) and the denoiser sees
``(z - mean) / std`` per channel, with mean/std stored in the codec's config (``mean``, ``std``,
``stats_count``), so training and sampling never multiply by constants of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["channel_view", "NormalisedCodec"]


def channel_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C,) -> (1, C, 1, ..., 1) to broadcast over a rank-``ndim`` tensor."""
    return v.view(1, -1, *([1] * (ndim - 2)))


class NormalisedCodec(nn.Module):
    """Base of the codecs: shift/scale buffers from ``config.mean``/``config.std`` and their fit.

    Subclasses implement :meth:`raw_latents` (what the statistics are fitted on) and may override
    :meth:`default_stats` (used before a fit) and :meth:`channel_label` (for error messages).
    """

    config: Any

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("shift", torch.zeros(0), persistent=False)  # (C',)
        self.register_buffer("scale", torch.ones(0), persistent=False)  # (C',)
        self._load_stats()

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def default_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift, scale) in float64 before any fit: the identity."""
        n = self.latent_channels
        return torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)

    def channel_label(self, k: int) -> str:
        return f"z{k}"

    def raw_latents(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Unnormalised latents (B, C', ...) of images (B, C, ...); what the statistics describe."""
        raise NotImplementedError

    def _load_stats(self) -> None:
        cfg = self.config
        if cfg.mean is None or cfg.std is None:
            shift, scale = self.default_stats()
        else:
            shift, scale = torch.tensor(cfg.mean, dtype=torch.float64), torch.tensor(cfg.std, dtype=torch.float64)
        device = self.shift.device
        self.shift = shift.to(device, torch.float32)
        self.scale = scale.to(device, torch.float32)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        shift = channel_view(self.shift.to(z.device, z.dtype), z.ndim)
        scale = channel_view(self.scale.to(z.device, z.dtype), z.ndim)
        return (z - shift) / scale

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        shift = channel_view(self.shift.to(z.device, z.dtype), z.ndim)
        scale = channel_view(self.scale.to(z.device, z.dtype), z.ndim)
        return z * scale + shift

    @torch.no_grad()
    def fit_stats(self, batches: Iterable[torch.Tensor | Mapping[str, torch.Tensor]], *, key: str = "image",
                  max_batches: int | None = None, **kwargs: Any):
        """Set per-latent-channel mean/std of :meth:`raw_latents` over image batches; returns self.

        Streaming and exact in float64: each batch's per-channel (count, mean, M2) is merged with
        Chan et al.'s parallel update (1979), so the result does not depend on how the data was
        batched. std is the population std. A channel that is constant over the data has no std to
        divide by: that is an error. Dict batches (MONAI) are read at ``key``; ``kwargs`` go to
        :meth:`raw_latents` (e.g. ``tile`` for the VAE).
        """
        n_ch = self.latent_channels
        count, mean, m2 = 0, None, None
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[key] if isinstance(batch, Mapping) else batch
            zc = self.raw_latents(x, **kwargs).double().transpose(0, 1).reshape(n_ch, -1)  # (C', N)
            n_b = zc.shape[1]
            mean_b = zc.mean(dim=1)
            m2_b = ((zc - mean_b[:, None]) ** 2).sum(dim=1)
            if mean is None or m2 is None:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        if mean is None or m2 is None:
            raise ValueError("fit_stats got no batches: pass an iterable of (B, C, D, H, W) tensors")
        std = (m2 / count).sqrt()
        flat = [self.channel_label(k) for k in torch.nonzero(std <= 0).flatten().tolist()]
        if flat:
            raise ValueError(
                f"latent channels {flat[:8]}{' ...' if len(flat) > 8 else ''} are constant over the "
                f"{count} voxels seen: std = 0 cannot normalise them; fit on more varied data"
            )
        self.config = dataclasses.replace(self.config, mean=mean.cpu().tolist(), std=std.cpu().tolist(),
                                          stats_count=int(count))
        self._load_stats()
        return self
