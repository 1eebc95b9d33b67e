"""The super-resolution stage (``stage: sr``): p(high-res | low-res) trained on random patches.

Space: the 1-level Haar wavelet latent of the full-resolution volume (``latent.type: wavelet``,
the default; any saved codec works too). The transform is exact and parameter-free, halves the
grid the UNet runs on (8x fewer voxels, the detail kept in 8 sub-bands) and is block-local, so a
crop of the latent is the latent of a crop: patches, the full grid and whole-volume sampling all
agree. Channels are the same as the diffusion stage's (modalities, plus WT/TC/ET in {-1, 1} with
``conditioning.generate_labels``), so the cascade upsamples labels with the image.

Conditioning (SR3 arXiv:2104.07636, CDM arXiv:2106.15282): the low-resolution volume is the
full-resolution one block-averaged by ``cascade.scale`` (what a base model trained with
``data.downsample: scale`` sees; region channels by the label rule of its data pipeline), gets
Gaussian conditioning augmentation (level a per sample, + a * N(0, 1) on the low-res grid, a fed to
the net as ``scalars``), is upsampled trilinearly to the full grid and encoded by the same codec,
then concatenated on channels (``cond_image``). With ``conditioning.mask`` the full-resolution
region masks are concatenated too.

Memory and the loader: the training set's pipeline cuts, on the host, one window per case around a
random ``cascade.patch_size`` patch (:mod:`medidiff.cascade.windows`: the patch plus the halo its
conditioning needs, seeded per item by the loop's ``(seed, epoch, index)`` rule), so only windows
are copied to the device; the loss degrades, conditions and encodes the window and crops the patch
at the ``patch_origin`` the batch carries. Given whole volumes (validation), the loss draws the
patch origin from the loop's per-step generator instead. Either way a resumed run sees the same
patches.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medidiff.cascade.patches import crop_patches, random_patch_origins
from medidiff.cascade.windows import PATCH_ORIGIN, RandSRWindowd, WindowGeometry, whole_cases
from medidiff.config import ConfigError, config_hash, save_resolved, to_dict
from medidiff.data.config import nearest_multiple
from medidiff.data.dataset import collate_cases
from medidiff.data.labels import block_majority_regions
from medidiff.data.transforms import IMAGE, LABEL, random_transforms
from medidiff.experiment import ExperimentConfig
from medidiff.latents import LatentCodec, load_codec
from medidiff.latents.wavelet import WaveletCodec
from medidiff.nets import build_net
from medidiff.nets.config import NetConfig
from medidiff.objectives import build_objective
from medidiff.training.diffusion import (
    build_datasets,
    fit_codec_stats,
    group_by_band,
    build_codec_for,
    mask_channels,
    mask_to_latent_grid,
    validation_loss_fn,
    model_input,
    run_dir_of,
)
from medidiff.training.loop import FitResult, fit
from medidiff.training.launch import process_rank
from medidiff.training.run_dir import claim_run_dir
from medidiff.generation import export_run
from medidiff.utils.tensor import append_dims, rand_on

log = logging.getLogger(__name__)

__all__ = [
    "KIND",
    "codec_factor",
    "latent_patch",
    "check_sr_config",
    "resolve_sr_net_config",
    "degrade",
    "upsample",
    "sr_condition",
    "SRLoss",
    "window_geometry",
    "block_local",
    "train_window_steps",
    "train_sr",
    "export_sr",
]

KIND = "medidiff.sr"


def codec_factor(codec: LatentCodec) -> tuple[int, ...]:
    """Image voxels per latent voxel along each axis."""
    return tuple(int(f) for f in codec.downsampling_factor)


def latent_patch(patch: tuple[int, ...], codec: LatentCodec) -> tuple[int, ...]:
    """An image-space patch size on the latent grid (assumes :func:`check_sr_config` passed)."""
    return tuple(p // f for p, f in zip(patch, codec_factor(codec)))


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_sr_config(cfg: ExperimentConfig, codec: LatentCodec | None = None, net_cfg: NetConfig | None = None) -> None:
    """Raise :class:`ConfigError` naming the key when the SR stage cannot run as configured."""
    c = cfg.cascade
    if cfg.data.downsample != 1:
        raise ConfigError(f"stage sr trains on full-resolution volumes: set data.downsample: 1 (got {cfg.data.downsample}); "
                          f"the base model's data.downsample is cascade.scale ({c.scale})")
    factor = codec_factor(codec) if codec is not None else (2**cfg.latent.levels,) * 3
    need = [f * c.scale for f in factor]
    if any(r % n for r, n in zip(cfg.data.roi, need)):
        fixed = [nearest_multiple(int(r), n) for r, n in zip(cfg.data.roi, need)]
        raise ConfigError(f"data.roi {_fmt(cfg.data.roi)} not divisible by cascade.scale {c.scale} x codec factor "
                          f"{factor[0]} = {need[0]}: use data.roi {_fmt(fixed)} (the low-res grid must be whole on "
                          "the latent grid)")
    multiple = [f * (net_cfg.size_multiple if net_cfg is not None else 1) for f in factor]
    for key, patch in (("cascade.patch_size", c.patch_size), ("cascade.sample_patch_size", c.inference_patch)):
        if any(p > r for p, r in zip(patch, cfg.data.roi)):
            raise ConfigError(f"{key} {_fmt(patch)} is larger than data.roi {_fmt(cfg.data.roi)}")
        if any(p % m for p, m in zip(patch, multiple)):
            fixed = [min(nearest_multiple(int(p), m), r - r % m) for p, m, r in zip(patch, multiple, cfg.data.roi)]
            raise ConfigError(f"{key} {_fmt(patch)} not divisible by {multiple[0]} (codec factor {factor[0]} x the "
                              f"UNet's size multiple {multiple[0] // factor[0]}): use {_fmt(fixed)}")


def resolve_sr_net_config(cfg: ExperimentConfig, codec: LatentCodec) -> NetConfig:
    """Channels follow from the codec: x and the encoded low-res volume (+ masks); one scalar (aug level)."""
    cond = codec.latent_channels + (mask_channels(codec) if cfg.conditioning.mask else 0)
    derived = dict(in_channels=codec.latent_channels, out_channels=codec.latent_channels, cond_channels=cond,
                   num_scalars=1, time_scale=1.0)  # the objective already scales time
    changed = {k: (getattr(cfg.net, k), v) for k, v in derived.items() if getattr(cfg.net, k) != v}
    if changed:
        log.info("SR net settings derived from codec/conditioning: %s",
                 ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    return dataclasses.replace(cfg.net, **derived)


def degrade(x: Tensor, scale: int, num_images: int) -> Tensor:
    """Low-resolution version of x (B, C, *S) -> (B, C, *S/scale).

    Image channels are block means (area averaging, like ``data.downsample``). Channels from
    ``num_images`` on are the WT/TC/ET masks in {-1, 1}: they are downsampled through their label
    map by the base stage's own rule (:func:`~medidiff.data.labels.block_majority_regions`), so the
    SR stage learns from the masks the base model is trained to generate.
    """
    if scale == 1:
        return x
    b, c, *spatial = x.shape
    if any(s % scale for s in spatial):
        raise ValueError(f"spatial size {tuple(spatial)} not divisible by scale {scale}")
    shape = [b, c]
    for s in spatial:
        shape += [s // scale, scale]
    low = x.reshape(shape).mean(dim=tuple(range(3, 2 * len(spatial) + 2, 2)))  # (B, C, *S/scale)
    if num_images < c:
        regions = block_majority_regions(x[:, num_images:], scale)  # (B, 3, *S/scale) bool
        low = torch.cat([low[:, :num_images], torch.where(regions, 1.0, -1.0).to(low.dtype)], dim=1)
    return low


def upsample(low: Tensor, size: tuple[int, ...]) -> Tensor:
    """(Bi/tri)linear upsampling (B, C, *S_lr) -> (B, C, *size): the conditioning's full-grid view."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[low.ndim - 2]
    return F.interpolate(low, size=tuple(size), mode=mode, align_corners=False)


def sr_condition(
    codec: LatentCodec,
    low: Tensor,
    *,
    level: Tensor,
    noise: Tensor,
    hr_spatial: tuple[int, ...],
    regions: Tensor | None = None,
) -> dict[str, Tensor]:
    """The SR net's conditions on the full latent grid.

    low (B, C, *S_lr) in [-1, 1]; level (B,) augmentation std; noise (B, C, *S_lr) standard
    normal; regions (B, 3, *hr_spatial) in {-1, 1} for mask-conditioned experiments. Returns
    ``cond_image`` (B, C' [+ mask channels], *latent) and ``scalars`` (B, 1) = level.
    """
    aug = low + append_dims(level.to(low.dtype), low.ndim) * noise  # CDM Gaussian conditioning augmentation
    cond_image = codec.encode(upsample(aug, hr_spatial))  # (B, C', *latent)
    if regions is not None:
        cond_image = torch.cat([cond_image, mask_to_latent_grid(codec, regions).to(cond_image.dtype)], dim=1)
    return {"cond_image": cond_image, "scalars": level.float()[:, None]}


class SRLoss:
    """loss_fn for :func:`medidiff.training.loop.fit`: degrade, condition, crop a latent patch, loss.

    Random numbers come from the step generator in a fixed order (aug level, aug noise, the patch
    origins when the batch does not carry them, then the objective's t and noise), and windows from
    the item seeds, so a resumed run repeats them exactly. ``net`` is
    the DeepSpeed engine in training (called once per micro-batch), the bare net in validation.
    """

    def __init__(self, cfg: ExperimentConfig, codec: LatentCodec, objective: Any) -> None:
        self.cfg, self.codec, self.objective = cfg, codec, objective
        self.patch = latent_patch(cfg.cascade.patch_size, codec)
        names = getattr(codec, "channel_names", None)
        self.names = list(names) if names else [f"z{i}" for i in range(codec.latent_channels)]

    def __call__(self, net: torch.nn.Module, batch: dict[str, Any], gen: torch.Generator):
        c = self.cfg.cascade
        # (B, C, *W) in [-1, 1]: host-cut windows (training) or whole volumes (validation)
        x, regions = model_input(batch, self.cfg)
        b, dev = x.shape[0], x.device
        with torch.no_grad():
            codec = self.codec.to(dev)
            low = degrade(x, c.scale, len(self.cfg.data.modalities))  # (B, C, *W/scale)
            level = rand_on((b,), gen, dev) * c.aug_max_level  # (B,)
            noise = rand_on(low.shape, gen, dev, normal=True).to(low.dtype)
            z = codec.encode(x)  # (B, C', *W/factor)
            cond = sr_condition(codec, low, level=level, noise=noise, hr_spatial=tuple(x.shape[2:]), regions=regions)
            if PATCH_ORIGIN in batch:  # image voxels, multiples of the codec factor (WindowGeometry)
                f = codec_factor(codec)
                origins = [tuple(int(o) // k for o, k in zip(org, f)) for org in batch[PATCH_ORIGIN]]
            else:
                origins = random_patch_origins(z.shape[2:], self.patch, batch=b, generator=gen)
            z = crop_patches(z, origins, self.patch)  # (B, C', *patch)
            cond["cond_image"] = crop_patches(cond["cond_image"], origins, self.patch)
        loss, per_channel = self.objective.loss(net, z, cond, generator=gen)
        return loss, group_by_band(per_channel, self.names)


def window_geometry(cfg: ExperimentConfig, codec: LatentCodec) -> WindowGeometry:
    """Where the training windows and patches sit on the ``data.roi`` grid (``downsample`` is 1)."""
    factor = codec_factor(codec)
    if len(set(factor)) != 1:
        raise ConfigError(f"latent.path: the SR stage needs a codec with one factor on every axis, got {list(factor)}")
    return WindowGeometry.for_sr(cfg.data.roi, cfg.cascade.patch_size, scale=cfg.cascade.scale, factor=factor[0])


def block_local(codec: LatentCodec) -> bool:
    """Whether the codec's latent of a crop on whole blocks is the crop of its latent (the Haar
    wavelet codec, any level). Other wavelets (periodized filters) and VAEs see past a block."""
    return isinstance(codec, WaveletCodec) and codec.config.wavelet == "haar"


def train_window_steps(cfg: ExperimentConfig, codec: LatentCodec) -> list[Any] | None:
    """The SR training set's random steps: the window cut (which also flips, ``data.flip_prob``),
    then the pipeline's dtype steps; None (whole cases, cut on the device) for a codec that is not
    :func:`block_local`, whose patch latents must come from the whole case to stay what they were."""
    if not block_local(codec):
        return None
    keys = [IMAGE] + ([LABEL] if cfg.data.label_mode != "none" else [])
    return [RandSRWindowd(keys, window_geometry(cfg, codec), flip_prob=cfg.data.flip_prob,
                          views=cfg.data.cache != "none"),
            *random_transforms(cfg.data, train=False, with_label=cfg.data.label_mode != "none")]


def train_sr(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> FitResult:
    """Train the super-resolution stage described by ``cfg`` (``stage: sr``); returns the loop's result."""
    if cfg.stage != "sr":
        raise ConfigError(f"train_sr needs stage: sr, got stage: {cfg.stage}")
    check_sr_config(cfg)  # roi/scale/downsample before touching data
    run_dir = claim_run_dir(run_dir_of(cfg), resume=resume, overwrite=overwrite)  # before anything is written
    main = process_rank() == 0  # shared files are written once, by rank 0
    if main:
        save_resolved(cfg, run_dir)
    codec_dir = run_dir / "codec"
    # decided once: rank 0 may write codec_dir while other ranks are still here
    saved_codec = resume and (codec_dir / "config.json").is_file()
    if saved_codec:
        codec = load_codec(codec_dir)
    else:
        codec = build_codec_for(cfg)
    net_cfg = resolve_sr_net_config(cfg, codec)
    check_sr_config(cfg, codec, net_cfg)
    windows = train_window_steps(cfg, codec)
    if windows is None and main:
        log.warning("the SR codec (%s) is not block-local: whole cases go to the device every step and the patch is "
                    "cut there (host-cut windows need latent.wavelet: haar)", type(codec).__name__)
    train_set, val_set = build_datasets(cfg, run_dir, train_random=windows)
    if not saved_codec:
        if cfg.latent.type == "wavelet" and cfg.latent.fit_stats:
            with whole_cases(train_set):  # the statistics of the whole grid, not of random windows
                fit_codec_stats(codec, train_set, cfg)
        if main:
            codec.save_pretrained(codec_dir)
    torch.manual_seed(cfg.seed)
    net = build_net(net_cfg)
    objective = build_objective(cfg.objective, getattr(codec, "channel_names", None))
    loss_fn = SRLoss(cfg, codec, objective)
    record = {"config": to_dict(cfg), "config_defaults": to_dict(type(cfg)()),  # for resume: _check_resumable
              "config_hash": config_hash(cfg), "net": to_dict(net_cfg),
              "codec": to_dict(codec.config), "kind": KIND}

    return fit(net, loss_fn, train_set, cfg.train, run_dir=run_dir, seed=cfg.seed, resume=resume, record=record,
               collate_fn=collate_cases, val_fn=validation_loss_fn(val_set, loss_fn, cfg), progress=progress,
               num_workers=cfg.data.num_workers, tracking=cfg.log)


def export_sr(run_dir: str | Path, out_dir: str | Path, *, weights: Literal["ema", "model"] = "ema") -> Path:
    """Consolidate the newest complete checkpoint of an SR run into a model folder (kind
    ``medidiff.sr``) that ``SRPipeline.from_pretrained`` loads."""
    return export_run(run_dir, out_dir, weights=weights, kind=KIND)

