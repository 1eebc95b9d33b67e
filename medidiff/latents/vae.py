"""VAECodec: a trained 3D KL autoencoder as a latent codec (LDM, arXiv:2112.10752; MAISI).

encode: x (B, C, D, H, W) in [-1, 1] -> posterior N(mu, sigma^2) (B, C', D/f, H/f, W/f)
        -> mu (or mu + sigma * eps, ``encode_mode``) -> (z - mean[k]) / std[k] per channel k.
decode: z -> z * std + mean -> decoder -> x_hat (B, C, D, H, W).

The network is MONAI's ``AutoencoderKL`` (spatial_dims=3, one stride-2 level per entry of
``channels`` after the first). With ``norm: voxel`` its GroupNorms are swapped for
:class:`VoxelGroupNorm` (same parameters, same state-dict keys) so the network has no
volume-wide statistics: tiled decoding of a full 240x240x155 volume is then exact away from tile
cuts (see :mod:`medidiff.latents.tiling`). ``mean``/``std`` are per-channel statistics of the
posterior means over the training set (LDM's 'scale factor', per channel), fitted once by
:meth:`VAECodec.fit_stats` and stored in ``config.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from medidiff.latents.codec import load_config_as, load_weights, save_config, save_weights
from medidiff.latents.config import VAEArchitecture, VAECodecConfig
from medidiff.latents.normalised import NormalisedCodec, channel_view
from medidiff.latents.tiling import sliding_window

__all__ = ["VoxelGroupNorm", "build_autoencoder", "kl_divergence", "VAECodec"]


class VoxelGroupNorm(nn.Module):
    """GroupNorm whose statistics are taken per voxel over the channels of each group.

    Unlike ``nn.GroupNorm`` (statistics over the group's channels *and the whole volume*) the
    output at a voxel depends only on that voxel's channels: the network stays local, so a tile
    gives the same activations as the whole volume (the volume-wide statistics of GroupNorm are
    what makes tiled SD-VAE decodes show seams). Parameters ``weight``/``bias`` (C,) are named as
    in ``nn.GroupNorm``. (B, C, *S) -> (B, C, *S).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels {num_channels} not divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        g = x.view(b, self.num_groups, c // self.num_groups, *spatial).float()  # (B, G, C/G, *S)
        var, mean = torch.var_mean(g, dim=2, keepdim=True, unbiased=False)
        y = ((g - mean) * torch.rsqrt(var + self.eps)).view(b, c, *spatial).to(x.dtype)
        if self.weight is not None and self.bias is not None:
            y = y * channel_view(self.weight, y.ndim).to(y.dtype) + channel_view(self.bias, y.ndim).to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


def _swap_group_norms(module: nn.Module) -> None:
    """GroupNorm -> VoxelGroupNorm with ONE group: a per-voxel LayerNorm over channels (ConvNeXt,
    arXiv:2201.03545). Per voxel, a group of g channels keeps only g - 2 degrees of freedom
    (mean and scale are removed), so small groups would erase the signal (g = 1 gives zeros)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, VoxelGroupNorm(1, child.num_channels, child.eps, child.affine))
        else:
            _swap_group_norms(child)


def build_autoencoder(arch: VAEArchitecture, in_channels: int) -> nn.Module:
    """MONAI ``AutoencoderKL`` for ``arch`` (3D, image channels in = out = ``in_channels``)."""
    from monai.networks.nets import AutoencoderKL

    levels = len(arch.channels or [])
    net = AutoencoderKL(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=in_channels,
        num_res_blocks=[arch.num_res_blocks] * levels,
        channels=list(arch.channels or []),
        attention_levels=[False] * (levels - 1) + [arch.attention],
        latent_channels=arch.latent_channels,
        norm_num_groups=arch.norm_groups if arch.norm == "group" else 1,  # voxel: swapped below
        with_encoder_nonlocal_attn=arch.attention,
        with_decoder_nonlocal_attn=arch.attention,
        include_fc=False,
    )
    if arch.norm == "voxel":
        _swap_group_norms(net)
    return net


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over all but the batch axis, averaged over it. -> ()."""
    var = sigma.float() ** 2
    kl = 0.5 * (mu.float() ** 2 + var - torch.log(var.clamp_min(1e-30)) - 1.0)
    return kl.flatten(1).sum(dim=1).mean()


class VAECodec(NormalisedCodec):
    """A trained 3D KL autoencoder behind the :class:`~medidiff.latents.codec.LatentCodec` protocol.

    >>> from medidiff.latents.config import VAEArchitecture
    >>> codec = VAECodec(VAECodecConfig(architecture=VAEArchitecture(latent_channels=8)))
    >>> codec.latent_shape((4, 128, 128, 96))
    (8, 32, 32, 24)
    """

    config_class = VAECodecConfig

    def __init__(self, config: VAECodecConfig | None = None) -> None:
        config = config if config is not None else VAECodecConfig()
        if not isinstance(config, VAECodecConfig):
            raise TypeError(f"VAECodec needs a VAECodecConfig, got {type(config).__name__}")
        super().__init__(config)
        self.autoencoder = build_autoencoder(config.architecture, config.in_channels)

    # ---- protocol attributes ----------------------------------------------------------------

    @property
    def factor(self) -> int:
        return self.config.architecture.factor

    @property
    def downsampling_factor(self) -> tuple[int, int, int]:
        f = self.factor
        return (f, f, f)

    @property
    def channel_names(self) -> list[str]:
        return [f"z{i}" for i in range(self.latent_channels)]

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(C, D, H, W) or (D, H, W) -> (C', D/f, H/f, W/f); sizes must divide by f."""
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 4:
            if shape[0] != self.in_channels:
                raise ValueError(f"image has {shape[0]} channels but the codec takes in_channels="
                                 f"{self.in_channels} ({self.config.modalities})")
            shape = shape[1:]
        if len(shape) != 3:
            raise ValueError(f"image_shape must be (C, D, H, W) or (D, H, W), got {image_shape}")
        f = self.factor
        if any(s % f for s in shape):
            fixed = tuple(-(-s // f) * f for s in shape)
            raise ValueError(f"image size {shape} not divisible by the VAE's downsampling {f}: pad to "
                             f"{fixed} (data.roi)")
        return (self.latent_channels, *(s // f for s in shape))  # type: ignore[return-value]

    def image_shape(self, latent_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        if len(latent_shape) != 4 or latent_shape[0] != self.latent_channels:
            raise ValueError(f"expected ({self.latent_channels}, D', H', W'), got {latent_shape}")
        return (self.in_channels, *(int(s) * self.factor for s in latent_shape[1:]))  # type: ignore[return-value]

    # ---- raw network ------------------------------------------------------------------------

    def _check_image(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, D, H, W) images ({self.config.modalities}), "
                             f"got shape {tuple(x.shape)}")
        self.latent_shape(tuple(x.shape[1:]))

    def _posterior(self, x: torch.Tensor) -> torch.Tensor:
        mu, sigma = self.autoencoder.encode(x)
        return torch.cat([mu, sigma], dim=1)  # (B, 2C', D', H', W')

    def receptive_radius(self) -> float:
        """Receptive-field radius of encoder and decoder, in latent voxels (inf with attention).

        Decoder: conv_in and each level's res blocks (2 convs each) at scale 2^k, the conv after
        each nearest upsampling, conv_out; encoder likewise in image voxels / f. A tile margin of
        at least this many latent voxels makes tiled == whole (``norm: voxel``).
        """
        arch = self.config.architecture
        if arch.attention:
            return float("inf")
        levels, nrb, f = len(arch.channels or []), arch.num_res_blocks, self.factor
        dec = 1.0
        for k in range(levels):
            dec += 2 * nrb / 2**k + (1 / 2 ** (k + 1) if k < levels - 1 else 0.0)
        dec += 1 / 2 ** (levels - 1)
        enc = 1.0  # image voxels
        for k in range(levels):
            enc += 2 * nrb * 2**k + (2 ** (k + 1) if k < levels - 1 else 0)
        enc += 2 ** (levels - 1)
        return max(dec, enc / f)

    def _tiling(self, overlap: int | Sequence[int] | None, margin: int | Sequence[int] | None):
        """Default margin: the receptive radius; default overlap: 2 margins + a 2-voxel ramp."""
        if margin is None:
            r = self.receptive_radius()
            margin = int(-(-r // 1)) if r != float("inf") else 4
        if overlap is None:
            m = max(margin) if not isinstance(margin, int) else margin
            overlap = 2 * m + 2
        return overlap, margin

    def posterior(self, x: torch.Tensor, *, tile: int | Sequence[int] | None = None,
                  overlap: int | Sequence[int] | None = None,
                  margin: int | Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised posterior (mu, sigma), each (B, C', D/f, H/f, W/f); tiled if ``tile`` is set."""
        self._check_image(x)
        if tile is None:
            return self.autoencoder.encode(x)
        f = self.factor
        overlap, margin = self._tiling(overlap, margin)
        both = sliding_window(self._posterior, x, grid=[s // f for s in x.shape[2:]], tile=tile, overlap=overlap,
                              in_scale=f, out_scale=1, out_channels=2 * self.latent_channels, margin=margin)
        return both[:, : self.latent_channels], both[:, self.latent_channels:]

    def raw_decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised latent (B, C', D', H', W') -> image (B, C, D' f, H' f, W' f)."""
        return self.autoencoder.decode(z)

    # ---- protocol ---------------------------------------------------------------------------

    def encode(
        self,
        x: torch.Tensor,
        *,
        mode: Literal["mean", "sample"] | None = None,
        generator: torch.Generator | None = None,
        tile: int | Sequence[int] | None = None,
        overlap: int | Sequence[int] | None = None,
        margin: int | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """x (B, C, D, H, W) in [-1, 1] -> normalised z (B, C', D/f, H/f, W/f).

        ``mode`` (default: the config's ``encode_mode``): posterior mean, or one sample
        mu + sigma * eps drawn from ``generator``. ``tile``/``overlap`` (latent voxels): encode
        tile by tile (posterior blended, then sampled once).
        """
        mode = mode or self.config.encode_mode
        mu, sigma = self.posterior(x, tile=tile, overlap=overlap, margin=margin)
        if mode == "sample":
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            mu = mu + sigma * eps
        elif mode != "mean":
            raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}")
        return self.normalize(mu)

    def decode(self, z: torch.Tensor, *, tile: int | Sequence[int] | None = None,
               overlap: int | Sequence[int] | None = None,
               margin: int | Sequence[int] | None = None) -> torch.Tensor:
        """Normalised z (B, C', D', H', W') -> x (B, C, D' f, H' f, W' f).

        ``tile`` (latent voxels per axis) decodes in overlapping tiles blended by raised-cosine
        windows (:func:`~medidiff.latents.tiling.sliding_window`): memory grows with the tile, not
        the volume. Defaults: ``margin`` = :meth:`receptive_radius` rounded up (then, with
        ``norm: voxel``, tiled equals whole up to float rounding), ``overlap`` = 2 margins + 2.
        Smaller overlaps are approximate but seamless (convex blend).
        """
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected (B, {self.latent_channels}, D', H', W') latents, got shape {tuple(z.shape)}")
        z = self.denormalize(z)
        if tile is None:
            return self.raw_decode(z)
        overlap, margin = self._tiling(overlap, margin)
        return sliding_window(self.raw_decode, z, grid=list(z.shape[2:]), tile=tile, overlap=overlap,
                              in_scale=1, out_scale=self.factor, out_channels=self.in_channels, margin=margin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    # ---- statistics -------------------------------------------------------------------------

    def raw_latents(self, x: torch.Tensor, *, tile: int | Sequence[int] | None = None) -> torch.Tensor:
        """Posterior means: what the latent statistics describe."""
        mu, _ = self.posterior(x.to(self.shift.device, torch.float32), tile=tile)
        return mu

    # ---- persistence ------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (architecture, statistics, channels) and model.safetensors."""
        directory = save_config(directory, self.config)
        save_weights(directory, self.autoencoder.state_dict())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> VAECodec:
        codec = cls(load_config_as(VAECodecConfig, directory))
        state = load_weights(directory)
        missing, unexpected = codec.autoencoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{Path(directory) / 'model.safetensors'} does not match config.json's architecture: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        return codec.to(device).eval()

    def extra_repr(self) -> str:
        c = self.config
        fitted = f"stats fitted on {c.stats_count} latent voxels" if c.mean is not None else "no latent stats"
        return f"{c.in_channels} -> {self.latent_channels} channels at 1/{self.factor}, {fitted}"
