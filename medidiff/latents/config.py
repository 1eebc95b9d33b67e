"""Configuration of latent codecs (the ``latent:`` section of an experiment, and ``config.json``).

Every codec config has a ``type`` key naming its entry in :data:`medidiff.latents.CODECS`
("wavelet", later "vae"), so a saved ``config.json`` says which class reads it and a YAML section
can hold any codec. Normalisation statistics are part of the config (DESIGN: derived constants
live in the config, never as literals in loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from medidiff.data.brats import MODALITIES

__all__ = ["CodecConfig", "WaveletCodecConfig", "LatentStageConfig", "VAEArchitecture", "VAEConfig", "VAECodecConfig"]


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
        if not 0 <= self.levels <= 3:
            raise ValueError(
                f"levels must be 0, 1, 2 or 3, got {self.levels} (levels=L gives 8**L*C channels "
                f"at 1/2**L resolution: 4 modalities at levels=3 is already 2048 channels; 0 is pixel space)"
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
                    f"packet, levels 0 pixel space); use wavelet='haar' or levels=1"
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
    levels: int = 1  # 0: pixel space (the identity transform), for the wavelet-vs-pixel ablation
    path: str | None = None  # (pretrained) a saved codec folder, e.g. a trained VAE's RUN/codec
    # (pretrained) a latent cache written by `medidiff latents encode --codec <path>`: training reads
    # the stored latents and never runs the codec; a cache of another codec or data section is refused
    cache: str | None = None
    fit_stats: bool = True  # (wavelet) fit per-sub-band statistics before training
    stats_batches: int = 8
    # (wavelet, fit_stats false) shift each channel's coarse band by +1, so an image's background (-1)
    # is 0 in every latent channel: what the net's zero padding and its zero-initialised output give.
    # Why: the x0 nets leave a faint positive haze outside the head that rises toward the grid's edges
    # (docs/quality.md); the block mean's range becomes [0, 2], the detail bands are unchanged. At 4 mm on
    # the CPU it saturated the brains (benchmarks/results/denoise_curve_cpu_20261202/small_4mm/zerobg).
    zero_background: bool = False

    def __post_init__(self) -> None:
        if self.type == "pretrained" and not self.path:
            raise ValueError("latent.type 'pretrained' needs latent.path (a codec folder with config.json)")
        if self.cache and self.type != "pretrained":
            raise ValueError("latent.cache needs latent.type 'pretrained' with latent.path = the codec that "
                             "encoded the cache (a fitted wavelet codec is saved by `medidiff latents stats`)")
        if not 0 <= self.levels <= 3:
            raise ValueError(f"levels must be 0 (pixel space), 1, 2 or 3, got {self.levels}")
        if self.stats_batches < 1:
            raise ValueError(f"stats_batches must be >= 1, got {self.stats_batches}")
        if self.zero_background and (self.type != "wavelet" or self.fit_stats):
            raise ValueError("latent.zero_background shifts the default wavelet scaling: it needs latent.type wavelet "
                             "with latent.fit_stats false (fitted statistics choose their own shift)")


def _check_stats(mean: list[float] | None, std: list[float] | None, n: int, what: str) -> None:
    if (mean is None) != (std is None):
        raise ValueError("mean and std must both be set or both be null (null = identity scaling)")
    if mean is None or std is None:
        return
    if len(mean) != n or len(std) != n:
        raise ValueError(f"mean/std need one entry per latent channel ({what} = {n}), got {len(mean)} and "
                         f"{len(std)}: refit with fit_stats (`medidiff latents stats`)")
    bad = [i for i, s in enumerate(std) if not (math.isfinite(s) and s > 0)]
    if bad:
        raise ValueError(f"std must be finite and > 0; bad channels {bad[:8]}")
    if not all(math.isfinite(m) for m in mean):
        raise ValueError("mean must be finite")


@dataclass
class VAEArchitecture:
    """Architecture of the 3D KL autoencoder (MONAI ``AutoencoderKL``, spatial_dims=3).

    ``downsample`` = 2**(len(channels) - 1) per axis: one stride-2 level between consecutive
    entries of ``channels``. ``channels: null`` picks [32, 64, 128] (4x) or [32, 64, 128, 128] (8x).

    ``norm``: ``voxel`` normalises each voxel over its channels (a per-voxel LayerNorm, as in
    ConvNeXt; ``norm_groups`` is then unused), so encoder and decoder are translation-equivariant
    with a finite receptive field and a tiled decode equals the whole decode away from tile cuts.
    ``group`` is plain GroupNorm (LDM, MONAI): its statistics span the whole input, so every tile
    sees different statistics and tiled decoding is only approximate (the seams of tiled SD VAEs).
    """

    latent_channels: int = 4
    downsample: Literal[4, 8] = 4  # per axis
    channels: list[int] | None = None
    num_res_blocks: int = 1
    norm_groups: int = 16
    norm: Literal["voxel", "group"] = "voxel"
    attention: bool = False  # self-attention in the deepest level (quadratic memory: off for 3D)

    def __post_init__(self) -> None:
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        levels = {4: 3, 8: 4}[self.downsample]
        if self.channels is None:
            self.channels = [32, 64, 128] if self.downsample == 4 else [32, 64, 128, 128]
        if len(self.channels) != levels:
            example = [32, 64, 128, 128][:levels]
            raise ValueError(
                f"channels {self.channels} has {len(self.channels)} levels = {2 ** (len(self.channels) - 1)}x "
                f"downsampling, but downsample is {self.downsample}: give {levels} entries, e.g. {example}"
            )
        bad = [c for c in self.channels if c < 1 or (self.norm == "group" and c % self.norm_groups)]
        if bad:
            raise ValueError(f"channels {self.channels}: every entry must be positive (and with norm 'group' "
                             f"a multiple of norm_groups={self.norm_groups}); bad: {bad}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")

    @property
    def factor(self) -> int:
        return int(self.downsample)


@dataclass
class VAEConfig(VAEArchitecture):
    """The ``vae:`` section (stage ``vae``): architecture plus the training losses.

    loss = L1(x, x_hat) + kl_weight * KL + perceptual_weight * P + adv_weight * G_adv (+ D loss),
    KL summed over latent elements and averaged over the batch (LDM, arXiv:2112.10752: kl_weight
    1e-6 keeps the posterior close to deterministic, so latents stay informative).
    """

    kl_weight: float = 1.0e-6
    # perceptual loss from a LOCAL safetensors file of a small 3D conv feature net (see
    # medidiff.latents.vae_task.FeatureNet3D); null: off. Never downloaded.
    perceptual_weights: str | None = None
    perceptual_weight: float = 0.1
    # patch adversarial loss (MONAI PatchDiscriminator, LSGAN), off by default
    adversarial: bool = False
    adv_weight: float = 0.01
    adv_start_step: int = 1000  # the GAN terms switch on at this optimizer step
    disc_channels: int = 32
    disc_layers: int = 3
    encode_mode: Literal["mean", "sample"] = "mean"  # what the exported codec's encode returns
    stats_batches: int = 64  # training batches used to fit the latent mean/std at export

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("kl_weight", "perceptual_weight", "adv_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("adv_start_step",):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.disc_channels < 1 or self.disc_layers < 1 or self.stats_batches < 1:
            raise ValueError("disc_channels, disc_layers and stats_batches must be >= 1")

    def architecture(self) -> VAEArchitecture:
        return VAEArchitecture(**{f.name: getattr(self, f.name) for f in fields(VAEArchitecture)})


@dataclass
class VAECodecConfig(CodecConfig):
    """``config.json`` of a trained VAE codec (``type: vae``).

    encode: x -> posterior mean (or a sample, ``encode_mode``) mu -> (mu - mean[k]) / std[k];
    ``mean``/``std`` are the per-channel statistics of the posterior means over the training set
    (the 'latent scaling factor' of LDM, per channel), fitted by ``VAECodec.fit_stats``.
    """

    type: Literal["vae"] = "vae"
    architecture: VAEArchitecture = field(default_factory=VAEArchitecture)
    encode_mode: Literal["mean", "sample"] = "mean"
    mean: list[float] | None = None
    std: list[float] | None = None
    stats_count: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_stats(self.mean, self.std, self.architecture.latent_channels, "architecture.latent_channels")
        if self.stats_count < 0:
            raise ValueError(f"stats_count must be >= 0, got {self.stats_count}")

    @property
    def latent_channels(self) -> int:
        return self.architecture.latent_channels
