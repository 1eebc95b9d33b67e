"""Configuration of latent codecs (the ``latent:`` section of an experiment, and ``config.json``).

Every codec config has a ``type`` key naming its entry in :data:`medidiff.latents.CODECS`
("wavelet", later "vae"), so a saved ``config.json`` says which class reads it and a YAML section
can hold any codec. Normalisation statistics are part of the config (DESIGN: derived constants
live in the config, never as literals in loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from medidiff.data.brats import MODALITIES

__all__ = ["CodecConfig", "WaveletCodecConfig"]


@dataclass
class CodecConfig:
    """Fields every codec config has. Subclasses narrow ``type`` to a Literal."""

    type: str = ""
    in_channels: int = 4
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.modalities) != self.in_channels:
            raise ValueError(
                f"modalities {self.modalities} has {len(self.modalities)} entries but in_channels="
                f"{self.in_channels}: give one name per input channel"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities has duplicates: {self.modalities}")


@dataclass
class WaveletCodecConfig(CodecConfig):
    """Exact (parameter-free) wavelet codec: DWT, then per-channel ``(z - mean) / std``.

    ``mean``/``std`` have one entry per latent channel (``8**levels * in_channels``, channel order
    of :func:`medidiff.latents.haar.subband_names`), fitted by ``WaveletCodec.fit_stats``. Both
    null means the default: every band unchanged except LLL^levels, divided by sqrt(8)**levels, so
    a [-1, 1] image gives LLL in [-1, 1] (the block mean). WDM divides LLL by 3 instead; its
    author agrees sqrt(8) = 2.83 is right: /3 maps [-1, 1] images to [-0.94, 0.94], so a clamp or
    noise scale tuned for [-1, 1] is off by 6%. Here the constant is derived, not typed in.

    ``wavelet`` other than "haar" (any orthogonal pywt wavelet, e.g. "db2") uses the slower dense
    per-axis path with periodization (orthonormal, exact halving), one level only.
    """

    type: Literal["wavelet"] = "wavelet"
    wavelet: str = "haar"
    levels: int = 1
    mean: list[float] | None = None
    std: list[float] | None = None
    stats_count: int = 0  # voxels per channel behind mean/std (0: not fitted)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.levels <= 3:
            raise ValueError(
                f"levels must be 1, 2 or 3, got {self.levels} (levels=L gives 8**L*C channels "
                f"at 1/2**L resolution: 4 modalities at levels=3 is already 2048 channels)"
            )
        if self.wavelet != "haar":
            import pywt

            if self.wavelet not in pywt.wavelist(kind="discrete"):
                raise ValueError(
                    f"wavelet {self.wavelet!r} is not a pywt discrete wavelet; try 'haar', 'db2', "
                    f"'sym4', 'coif1' (pywt.wavelist(kind='discrete'))"
                )
            if not pywt.Wavelet(self.wavelet).orthogonal:
                raise ValueError(
                    f"wavelet {self.wavelet!r} is biorthogonal, not orthogonal: the codec needs an "
                    f"orthonormal transform (energy-preserving, white noise stays white); use e.g. 'db2'"
                )
            if self.levels != 1:
                raise ValueError(
                    f"wavelet {self.wavelet!r} supports levels=1 only (levels > 1 is the Haar "
                    f"packet); use wavelet='haar' or levels=1"
                )
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be set or both be null (null = default LLL scaling)")
        n = self.latent_channels
        if self.mean is not None and self.std is not None:
            if len(self.mean) != n or len(self.std) != n:
                raise ValueError(
                    f"mean/std need one entry per latent channel (8**{self.levels} * {self.in_channels}"
                    f" = {n}), got {len(self.mean)} and {len(self.std)}: refit with fit_stats"
                )
            bad = [i for i, s in enumerate(self.std) if not (math.isfinite(s) and s > 0)]
            if bad:
                raise ValueError(f"std must be finite and > 0; bad channels {bad[:8]}")
            if not all(math.isfinite(m) for m in self.mean):
                raise ValueError("mean must be finite")
        if self.stats_count < 0:
            raise ValueError(f"stats_count must be >= 0, got {self.stats_count}")

    @property
    def latent_channels(self) -> int:
        return 8**self.levels * self.in_channels


@dataclass
class LatentStageConfig:
    """The ``latent:`` section of a diffusion experiment: which codec turns volumes into latents.

    ``pretrained`` loads a saved codec (a trained VAE, or a fitted wavelet codec) from ``path``;
    its channels must match the data. ``wavelet`` builds a parameter-free Haar (or other orthogonal) codec for the data's channels
    and, with ``fit_stats``, fits its per-sub-band normalisation on ``stats_batches`` training
    batches before training; the fitted codec is saved with the model.
    """

    type: Literal["wavelet", "pretrained"] = "wavelet"
    wavelet: str = "haar"
    levels: int = 1
    path: str | None = None  # (pretrained) a saved codec folder, e.g. a trained VAE's RUN/codec
    fit_stats: bool = True  # (wavelet) fit per-sub-band statistics before training
    stats_batches: int = 8

    def __post_init__(self) -> None:
        if self.type == "pretrained" and not self.path:
            raise ValueError("latent.type 'pretrained' needs latent.path (a codec folder with config.json)")
        if not 1 <= self.levels <= 3:
            raise ValueError(f"levels must be 1, 2 or 3, got {self.levels}")
        if self.stats_batches < 1:
            raise ValueError(f"stats_batches must be >= 1, got {self.stats_batches}")


@dataclass
class VAEConfig:
    """The ``vae:`` section: architecture and losses of a 3D KL autoencoder (stage ``vae``).

    (Filled in by the VAE codec work; fields here are the agreed minimum.)
    """

    latent_channels: int = 4
    downsample: Literal[4, 8] = 4  # per axis

    def __post_init__(self) -> None:
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
