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
from pathlib import Path

import torch

from medidiff.latents.codec import load_config_as, save_config
from medidiff.latents.config import WaveletCodecConfig
from medidiff.latents.normalised import NormalisedCodec
from medidiff.latents.haar import Backend, check_divisible, fast_dwt3, fast_idwt3, subband_names

__all__ = ["WaveletCodec", "periodized_dwt3", "periodized_idwt3"]


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


class WaveletCodec(NormalisedCodec):
    """Exact wavelet codec; see the module docstring. Has no weights, only statistics (in config).

    >>> codec = WaveletCodec(WaveletCodecConfig(levels=1))
    >>> codec.latent_shape((4, 128, 128, 96))
    (32, 64, 64, 48)
    """

    config_class = WaveletCodecConfig

    def __init__(self, config: WaveletCodecConfig | None = None, *, backend: Backend = "auto") -> None:
        config = config if config is not None else WaveletCodecConfig()
        if not isinstance(config, WaveletCodecConfig):
            raise TypeError(f"WaveletCodec needs a WaveletCodecConfig, got {type(config).__name__}")
        super().__init__(config)
        self.backend: Backend = backend

    # ---- protocol attributes ----------------------------------------------------------------

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
        return self.normalize(self.dwt(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised z (B, C', D', H', W') -> x (B, C, D, H, W)."""
        return self.idwt(self.denormalize(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    # ---- statistics -------------------------------------------------------------------------

    def default_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale = super().default_stats()
        # LLL^L is the (2^L)^3 block sum / sqrt(8)^L: divide by sqrt(8)^L -> block mean in [-1, 1]
        scale[: self.config.in_channels] = math.sqrt(8.0) ** self.config.levels
        return shift, scale

    def zero_background(self) -> WaveletCodec:
        """Shift the default scaling so a [-1, 1] image's background (-1) encodes to 0 in every channel:
        the coarse band becomes the block mean + 1 (in [0, 2]); the detail bands of a constant are 0
        already. Stored in the config's mean/std (``stats_count`` stays 0: nothing was fitted), so a
        saved codec decodes the same way. Returns self."""
        shift, scale = self.default_stats()
        shift[: self.config.in_channels] = -scale[: self.config.in_channels]
        self.config = dataclasses.replace(self.config, mean=shift.tolist(), std=scale.tolist(), stats_count=0)
        self._load_stats()
        return self

    def channel_label(self, k: int) -> str:
        return self.channel_names[k]

    def raw_latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwt(x.to(torch.float64))  # float64: exact statistics

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
