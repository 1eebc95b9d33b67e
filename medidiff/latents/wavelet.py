"""WaveletCodec: the exact, parameter-free latent codec (WDM-style wavelet diffusion).

encode: x (B, C, D, H, W) in [-1, 1] -> DWT -> z (B, 8**L C, D/2**L, H/2**L, W/2**L)
        -> (z - mean[k]) / std[k] per latent channel k.
decode: the exact inverse.

Haar (the default) uses the fast kernels of :mod:`medidiff.latents.haar`, including the full
packet for levels 2-3. Any other orthogonal pywt wavelet (e.g. "db2") goes through a slower dense
per-axis path with periodization, one level: the circular extension keeps the transform
orthonormal and halves every size exactly. (ptwt's separable 3D transform, ``ptwt.wavedec3``, has
no 'periodization' mode and its 'zero'/'reflect' modes grow the bands and are not orthonormal, so
the dense path builds the per-axis matrix from pywt's own periodized DWT and matches
``pywt.dwtn(..., mode="periodization")``.) Subband and channel order are the same on both paths:
``channel = s * C + c`` with s the LLL..HHH index of :data:`medidiff.latents.haar.SUBBANDS`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from medidiff.latents.codec import load_config_as, save_config
from medidiff.latents.config import WaveletCodecConfig
from medidiff.latents.haar import Backend, check_divisible, fast_dwt3, fast_idwt3, subband_names

__all__ = ["WaveletCodec", "periodized_dwt3", "periodized_idwt3"]


def _channel_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C',) -> (1, C', 1, ..., 1) to broadcast over a rank-``ndim`` tensor."""
    return v.view(1, -1, *([1] * (ndim - 2)))


# --------------------------------------------------------------------------------------------
# Dense periodized DWT for any orthogonal pywt wavelet (one level)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _analysis_matrix(wavelet: str, n: int) -> torch.Tensor:
    """(n, n) float64 A with A @ signal = [cA; cD] of pywt.dwt(signal, mode='periodization')."""
    import numpy as np
    import pywt

    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        ca, cd = pywt.dwt(e, wavelet, mode="periodization")
        cols.append(np.concatenate([ca, cd]))
    a = torch.from_numpy(np.stack(cols, axis=1))
    if a.shape != (n, n):
        raise ValueError(f"wavelet {wavelet!r} on length {n}: periodized DWT is not square {tuple(a.shape)}")
    err = (a @ a.T - torch.eye(n, dtype=a.dtype)).abs().max().item()
    if err > 1e-8:
        raise ValueError(
            f"wavelet {wavelet!r} is not orthonormal on length {n} (|A A^T - I| = {err:.1e}); "
            f"its filter is longer than the axis: use larger volumes or 'haar'"
        )
    return a


def _along(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply matrix m (n_out, n_in) along axis ``dim`` of x."""
    return torch.movedim(torch.movedim(x, dim, -1) @ m.T, -1, dim)


def periodized_dwt3(x: torch.Tensor, wavelet: str) -> torch.Tensor:
    """One-level orthonormal 3D DWT with periodization. (B, C, D, H, W) -> (B, 8C, D/2, H/2, W/2)."""
    if x.ndim != 5:
        raise ValueError(f"expected a (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    check_divisible(x.shape[2:], 1)
    B, C, D, H, W = x.shape
    y = x
    for dim, n in ((2, D), (3, H), (4, W)):
        y = _along(y, _analysis_matrix(wavelet, n).to(x.device, x.dtype), dim)
    # each axis is now [lo | hi]: (B, C, 2, D/2, 2, H/2, 2, W/2) -> (B, 2, 2, 2, C, D/2, H/2, W/2)
    y = y.reshape(B, C, 2, D // 2, 2, H // 2, 2, W // 2).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return y.reshape(B, 8 * C, D // 2, H // 2, W // 2)  # channel = (4bD + 2bH + bW) * C + c


def periodized_idwt3(z: torch.Tensor, wavelet: str) -> torch.Tensor:
    """Inverse of :func:`periodized_dwt3` (orthonormal: the transpose)."""
    B, C8, D2, H2, W2 = z.shape
    C = C8 // 8
    y = z.reshape(B, 2, 2, 2, C, D2, H2, W2).permute(0, 4, 1, 5, 2, 6, 3, 7)
    y = y.reshape(B, C, 2 * D2, 2 * H2, 2 * W2)
    for dim, n in ((2, 2 * D2), (3, 2 * H2), (4, 2 * W2)):
        y = _along(y, _analysis_matrix(wavelet, n).to(z.device, z.dtype).T, dim)
    return y


# --------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------


class WaveletCodec(torch.nn.Module):
    """Exact wavelet codec; see the module docstring. Has no weights, only statistics (in config).

    >>> codec = WaveletCodec(WaveletCodecConfig(levels=1))
    >>> codec.latent_shape((4, 128, 128, 96))
    (32, 64, 64, 48)
    """

    config_class = WaveletCodecConfig

    def __init__(self, config: WaveletCodecConfig | None = None, *, backend: Backend = "auto") -> None:
        super().__init__()
        config = config if config is not None else WaveletCodecConfig()
        if not isinstance(config, WaveletCodecConfig):
            raise TypeError(f"WaveletCodec needs a WaveletCodecConfig, got {type(config).__name__}")
        self.backend: Backend = backend
        self.config = config
        self.register_buffer("shift", torch.zeros(0), persistent=False)  # (C',)
        self.register_buffer("scale", torch.ones(0), persistent=False)  # (C',)
        self._load_stats()

    # ---- protocol attributes ----------------------------------------------------------------

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def downsampling_factor(self) -> tuple[int, int, int]:
        f = 2**self.config.levels
        return (f, f, f)

    @property
    def channel_names(self) -> list[str]:
        """Name of each latent channel, e.g. 'LLH:t1c' (see haar.subband_names)."""
        return subband_names(self.config.levels, self.config.modalities)

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(C, D, H, W) or (D, H, W) -> (8**L C, D/2**L, H/2**L, W/2**L)."""
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 4:
            if shape[0] != self.in_channels:
                raise ValueError(
                    f"image has {shape[0]} channels but the codec was configured for in_channels="
                    f"{self.in_channels} ({self.config.modalities})"
                )
            shape = shape[1:]
        if len(shape) != 3:
            raise ValueError(f"image_shape must be (C, D, H, W) or (D, H, W), got {image_shape}")
        check_divisible(shape, self.config.levels)
        f = 2**self.config.levels
        return (self.latent_channels, shape[0] // f, shape[1] // f, shape[2] // f)

    def image_shape(self, latent_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(C', D', H', W') -> (C, D, H, W), the inverse of :meth:`latent_shape`."""
        if len(latent_shape) != 4 or latent_shape[0] != self.latent_channels:
            raise ValueError(f"expected ({self.latent_channels}, D', H', W'), got {latent_shape}")
        f = 2**self.config.levels
        return (self.in_channels, *(int(s) * f for s in latent_shape[1:]))  # type: ignore[return-value]

    # ---- transform --------------------------------------------------------------------------

    def dwt(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised transform. (B, C, D, H, W) -> (B, C', D', H', W')."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (B, {self.in_channels}, D, H, W) images ({self.config.modalities}), "
                f"got shape {tuple(x.shape)}"
            )
        if self.config.wavelet == "haar":
            return fast_dwt3(x, self.config.levels, backend=self.backend)
        return periodized_dwt3(x, self.config.wavelet)

    def idwt(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised inverse. (B, C', D', H', W') -> (B, C, D, H, W)."""
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected (B, {self.latent_channels}, D', H', W') latents, got shape {tuple(z.shape)}"
            )
        if self.config.wavelet == "haar":
            return fast_idwt3(z, self.config.levels, backend=self.backend)
        return periodized_idwt3(z, self.config.wavelet)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, D, H, W) in [-1, 1] -> normalised z (B, C', D', H', W')."""
        z = self.dwt(x)
        shift = _channel_view(self.shift.to(z.device, z.dtype), z.ndim)
        scale = _channel_view(self.scale.to(z.device, z.dtype), z.ndim)
        return (z - shift) / scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised z (B, C', D', H', W') -> x (B, C, D, H, W)."""
        shift = _channel_view(self.shift.to(z.device, z.dtype), z.ndim)
        scale = _channel_view(self.scale.to(z.device, z.dtype), z.ndim)
        return self.idwt(z * scale + shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    # ---- statistics -------------------------------------------------------------------------

    def _load_stats(self) -> None:
        cfg = self.config
        n = cfg.latent_channels
        if cfg.mean is None or cfg.std is None:
            shift = torch.zeros(n, dtype=torch.float64)
            scale = torch.ones(n, dtype=torch.float64)
            # LLL^L is the (2^L)^3 block sum / sqrt(8)^L: divide by sqrt(8)^L -> block mean in [-1, 1]
            scale[: cfg.in_channels] = math.sqrt(8.0) ** cfg.levels
        else:
            shift = torch.tensor(cfg.mean, dtype=torch.float64)
            scale = torch.tensor(cfg.std, dtype=torch.float64)
        device = self.shift.device
        self.shift = shift.to(device, torch.float32)
        self.scale = scale.to(device, torch.float32)

    @torch.no_grad()
    def fit_stats(
        self,
        batches: Iterable[torch.Tensor | Mapping[str, torch.Tensor]],
        *,
        key: str = "image",
        max_batches: int | None = None,
    ) -> WaveletCodec:
        """Set per-latent-channel mean/std from image batches (B, C, D, H, W); returns self.

        Streaming and exact in float64: each batch's per-channel (count, mean, M2) is merged with
        Chan et al.'s parallel update (1979), so the result does not depend on how the data was
        batched and does not lose precision over many batches. std is the population std. A
        channel that is constant over the data has no std to divide by: that is an error.
        Dict batches (MONAI) are read at ``key``.
        """
        n_ch = self.latent_channels
        count = 0
        mean: torch.Tensor | None = None
        m2: torch.Tensor | None = None
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[key] if isinstance(batch, Mapping) else batch
            z = self.dwt(x.to(torch.float64))  # (B, C', D', H', W')
            zc = z.transpose(0, 1).reshape(n_ch, -1)  # (C', B*D'*H'*W')
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
        names = self.channel_names
        flat = [names[k] for k in torch.nonzero(std <= 0).flatten().tolist()]
        if flat:
            raise ValueError(
                f"latent channels {flat[:8]}{' ...' if len(flat) > 8 else ''} are constant over the "
                f"{count} voxels seen: std = 0 cannot normalise them; fit on more varied data"
            )
        self.config = dataclasses.replace(
            self.config, mean=mean.cpu().tolist(), std=std.cpu().tolist(), stats_count=int(count)
        )
        self._load_stats()
        return self

    # ---- persistence ------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (statistics included); a wavelet codec has no weights file."""
        return save_config(directory, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, backend: Backend = "auto") -> WaveletCodec:
        return cls(load_config_as(WaveletCodecConfig, directory), backend=backend)

    def extra_repr(self) -> str:
        c = self.config
        fitted = f"fitted on {c.stats_count} voxels" if c.mean is not None else "default LLL scaling"
        return f"wavelet={c.wavelet!r}, levels={c.levels}, {c.in_channels} -> {self.latent_channels} channels, {fitted}"
