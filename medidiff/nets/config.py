"""Configuration of the denoiser network (the ``net:`` section of an experiment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NetConfig"]


@dataclass
class NetConfig:
    """A 3D UNet denoiser, ours (``unet3d``) or MONAI's ``DiffusionModelUNet`` (``monai``).

    Speed notes (measured on H100/H200, see ``benchmarks/unet_bench.py``): 3D UNets are
    memory-bound in normalisation, activation and layout changes, not in their convolutions. The
    options marked *speed* trade a little flexibility for fewer bytes moved per voxel.
    """

    type: Literal["unet3d", "monai"] = "unet3d"
    spatial_dims: Literal[2, 3] = 3  # 2 exists for tests and slice models; BraTS uses 3
    in_channels: int = 8
    out_channels: int = 8
    cond_channels: int = 0  # image conditioning concatenated on channels (Med-DDPM, arXiv:2305.18453)
    channels: tuple[int, ...] = (64, 128, 128, 256, 256)  # width per level
    # int for every level or one per level; *speed*: fewer blocks at the finest level pay most
    num_res_blocks: int | tuple[int, ...] = 2
    attention_levels: tuple[bool, ...] | None = None  # self-attention per level; null = none
    head_dim: int = 32  # heads = width // head_dim (ADM's num_head_channels, arXiv:2105.05233)
    mid_attention: bool = False  # self-attention in the bottleneck
    cross_attention_dim: int | None = None  # text-token width; null = no cross-attention
    num_classes: int = 0  # 0 = unconditional; index num_classes is the CFG "null" class
    num_scalars: int = 0  # per-sample scalar conditions (age, tumour volume, ...)
    # 'concat' (ADM/MONAI) doubles the first conv's input on the way up; 'add' (*speed*) sums the
    # skip into the upsampled features: no concat copy and a cheaper conv, as in plain FPN decoders
    skip: Literal["concat", "add"] = "concat"
    # 'patch' (*speed*): 2x2x2 stride-2 conv down / transposed conv up, 27x fewer FLOPs than the
    # 'conv' choice (3x3x3 stride-2 conv down / nearest + 3x3x3 conv up, ADM)
    resample: Literal["conv", "patch"] = "patch"
    # *speed*: p > 1 patchifies the input with a p^3 stride-p conv (and un-patchifies the output
    # with a transposed conv), so the widest level runs at (D/p)^3: ~p^3 less work at the finest
    # level, at the cost of fine detail inside each p^3 patch (as in U-ViT/DiT latents)
    stem_patch: int = 1
    # 'group': GroupNorm (ADM/MONAI). 'pixel' (*speed*): RMS over the channels of each voxel with a
    # learned gain and bias (EDM2's pixel norm, arXiv:2312.02696): no spatial reduction, so it is one
    # fused pass in channels-last, and patch-wise inference (cascade SR) has no per-patch statistics
    # (it still differs from whole-volume inference within the receptive field of patch borders)
    norm: Literal["group", "pixel"] = "group"
    norm_groups: int = 32  # GroupNorm only
    norm_eps: float = 1e-6
    dropout: float = 0.0
    use_scale_shift_norm: bool = True  # AdaGN: GN(h) * (1 + scale) + shift from the time embedding (ADM)
    zero_init: bool = True  # zero the last conv of every residual branch and the output conv (ADM)
    checkpointing: bool = False  # activation checkpointing per block (use_reentrant=False)
    channels_last: bool = True  # build weights in channels_last(_3d); inputs are converted on entry
    # The time embedding sees t * time_scale. Both objectives already pass network times in
    # [0, num_train_steps) (DDPM its integer step, flow t * num_train_steps), so 1 is right for
    # every net an objective drives; set 1000 only when calling the net yourself with t in [0, 1].
    # Experiments always build the net with 1 (resolve_net_config, logged if the YAML differs):
    # resolved configs written before this default changed carry 1000.0, which no trained net
    # used, and exported models record the 1.0 they were built with under "net".
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n < 1:
            raise ValueError("channels must list at least one level width, e.g. [64, 128, 256]")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cond_channels < 0 or self.num_classes < 0 or self.num_scalars < 0:
            raise ValueError("cond_channels, num_classes and num_scalars must be >= 0")
        if isinstance(self.num_res_blocks, int):
            self.num_res_blocks = (self.num_res_blocks,) * n
        self.num_res_blocks = tuple(self.num_res_blocks)
        if len(self.num_res_blocks) != n:
            raise ValueError(
                f"num_res_blocks has {len(self.num_res_blocks)} entries but channels has {n} levels: "
                f"give one int or one per level"
            )
        if any(b < 1 for b in self.num_res_blocks):
            raise ValueError(f"num_res_blocks must be >= 1 per level, got {self.num_res_blocks}")
        self.channels = tuple(self.channels)
        if self.attention_levels is None:
            self.attention_levels = (False,) * n
        self.attention_levels = tuple(self.attention_levels)
        if len(self.attention_levels) != n:
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries but channels has {n} levels"
            )
        bad = [c for c in self.channels if c < 1 or (self.norm == "group" and c % self.norm_groups)]
        if bad:
            raise ValueError(
                f"channels {list(self.channels)}: {bad} not divisible by norm_groups={self.norm_groups}; "
                f"use multiples of {self.norm_groups} or lower norm_groups"
            )
        for lvl, (c, att) in enumerate(zip(self.channels, self.attention_levels)):
            if att and c % self.head_dim:
                raise ValueError(f"level {lvl} width {c} is not divisible by head_dim={self.head_dim}")
        if self.mid_attention and self.channels[-1] % self.head_dim:
            raise ValueError(f"bottleneck width {self.channels[-1]} not divisible by head_dim={self.head_dim}")
        if self.cross_attention_dim is not None:
            if self.cross_attention_dim < 1:
                raise ValueError("cross_attention_dim must be >= 1 or null")
            if not (any(self.attention_levels) or self.mid_attention):
                raise ValueError(
                    "cross_attention_dim is set but no attention_levels/mid_attention: cross-attention "
                    "lives in the attention blocks, enable at least one"
                )
        if self.stem_patch not in (1, 2, 4):
            raise ValueError(f"stem_patch must be 1, 2 or 4, got {self.stem_patch}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.type == "monai":
            # Every option MONAI's DiffusionModelUNet cannot honour is refused by name, with the
            # value that describes what it does build: an option accepted and then ignored would
            # train another net than the config says (issue 21).
            fixes = {
                "skip": (self.skip == "concat", "concat"),
                "resample": (self.resample == "conv", "conv"),
                "stem_patch": (self.stem_patch == 1, "1"),
                "norm": (self.norm == "group", "group"),
                # its middle block always has (cross-)attention between two ResBlocks
                "mid_attention": (self.mid_attention, "true"),
                # its ResBlocks add the time embedding (h + emb), no GN(h) * (1 + scale) + shift
                "use_scale_shift_norm": (not self.use_scale_shift_norm, "false"),
                # its ResBlocks have no dropout (only cross-attention dropout, which we do not expose)
                "dropout": (self.dropout == 0.0, "0"),
                # it always zeroes each ResBlock's last conv, each transformer's output and the out conv
                "zero_init": (self.zero_init, "true"),
                # it has no activation checkpointing
                "checkpointing": (not self.checkpointing, "false"),
            }
            bad = [k for k, (ok, _) in fixes.items() if not ok]
            if bad:
                raise ValueError(
                    f"type='monai' (MONAI's DiffusionModelUNet) does not support "
                    f"{', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}: set "
                    f"{', '.join(f'{k}: {fixes[k][1]}' for k in bad)}, or use type: unet3d"
                )

    @property
    def size_multiple(self) -> int:
        """Every spatial size must be a multiple of this (patch stem times 2 per downsampling)."""
        return self.stem_patch * 2 ** (len(self.channels) - 1)

    @property
    def emb_dim(self) -> int:
        """Width of the time/class/scalar embedding (4x the first level, as in ADM)."""
        return 4 * self.channels[0]
