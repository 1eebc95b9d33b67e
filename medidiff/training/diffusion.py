"""The diffusion stage: data -> latent codec -> denoiser trained by an objective, via the one loop.

Channel layout of what the model generates (before the codec): the image modalities in
``data.modalities`` order, then, with ``conditioning.generate_labels``, the WT/TC/ET region masks
mapped to {-1, 1}, then, with ``conditioning.generate_brain``, the brain mask in {-1, 1} (any modality
above the background; :func:`split_generated` cuts a generated case to it). With ``conditioning.mask`` the region masks instead condition the net: they are
wavelet-transformed with the same (unnormalised) transform and concatenated on channels, so the
conditioning sits on the latent grid without losing detail.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from medidiff.config import config_hash, save_resolved, to_dict
from medidiff.data.config import check_scale_labels
from medidiff.data.dataset import collate_cases, manifest_datasets
from medidiff.errors import MedidiffError
from medidiff.experiment import ExperimentConfig
from medidiff.latents import LatentCodec, load_codec
from medidiff.latents.config import WaveletCodecConfig
from medidiff.latents.haar import fast_dwt3
from medidiff.latents.wavelet import WaveletCodec, periodized_dwt3
from medidiff.nets import build_net
from medidiff.nets.config import NetConfig
from medidiff.objectives import build_objective
from medidiff.objectives.channels import split_channel_names
from medidiff.conditioning.text import net_config_for_text
from medidiff.training.loop import FitResult, fit, shard
from medidiff.training.launch import process_rank
from medidiff.training.run_dir import claim_run_dir

log = logging.getLogger(__name__)

__all__ = [
    "NUM_REGIONS",
    "run_dir_of",
    "BRAIN",
    "channel_names",
    "model_channels",
    "brain_channel",
    "split_generated",
    "build_codec_for",
    "mask_to_latent_grid",
    "mask_channels",
    "resolve_net_config",
    "net_divisor",
    "model_input",
    "DiffusionLoss",
    "group_by_band",
    "build_datasets",
    "cached_datasets",
    "fit_codec_stats",
    "validation_loss_fn",
    "build_text_conditioner",
    "train_diffusion",
]

NUM_REGIONS = 3  # WT, TC, ET


def run_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


BRAIN = "brain"  # the generated brain mask's channel name (conditioning.generate_brain)


def channel_names(cfg: ExperimentConfig) -> list[str]:
    """What the codec sees, in order: modalities (+ generated region masks) (+ the brain mask)."""
    return (list(cfg.data.modalities) + (["WT", "TC", "ET"] if cfg.conditioning.generate_labels else [])
            + ([BRAIN] if cfg.conditioning.generate_brain else []))


def model_channels(cfg: ExperimentConfig) -> int:
    """Channels the codec sees (:func:`channel_names`)."""
    return len(channel_names(cfg))


def build_codec_for(cfg: ExperimentConfig) -> LatentCodec:
    """The experiment's codec: a fresh wavelet codec, or a saved one (``latent.type: pretrained``)."""
    mods = channel_names(cfg)
    if cfg.latent.type == "pretrained":
        codec = load_codec(cfg.latent.path)
        if codec.in_channels != len(mods):
            raise MedidiffError(
                f"latent.path {cfg.latent.path}: the codec takes {codec.in_channels} channels but this experiment "
                f"generates {len(mods)} ({', '.join(mods)})"
            )
        return codec
    codec = WaveletCodec(WaveletCodecConfig(
        type="wavelet", wavelet=cfg.latent.wavelet, levels=cfg.latent.levels,
        in_channels=len(mods), modalities=mods,
    ))
    return codec.zero_background() if cfg.latent.zero_background else codec


def mask_to_latent_grid(codec: LatentCodec, regions: torch.Tensor) -> torch.Tensor:
    """Region masks (B, 3, D, H, W) in {-1, 1} on the latent grid, for channel concatenation.

    A wavelet codec transforms them losslessly (unnormalised DWT: (B, 8^L * 3, D', H', W'));
    other codecs average them over each latent voxel's footprint (B, 3, D', H', W').
    """
    if isinstance(codec, WaveletCodec):
        # codec.dwt checks for the codec's own channel count; the masks have 3 channels
        if codec.config.wavelet == "haar":
            return fast_dwt3(regions, codec.config.levels, backend=codec.backend)
        return periodized_dwt3(regions, codec.config.wavelet)
    return torch.nn.functional.avg_pool3d(regions, kernel_size=codec.downsampling_factor)


def mask_channels(codec: LatentCodec) -> int:
    if isinstance(codec, WaveletCodec):
        return codec.latent_channels // codec.in_channels * NUM_REGIONS
    return NUM_REGIONS


def resolve_net_config(cfg: ExperimentConfig, codec: LatentCodec) -> NetConfig:
    """The net's channel counts follow from the codec and conditioning; logged, not guessed."""
    cond = mask_channels(codec) if cfg.conditioning.mask else 0
    derived = dict(in_channels=codec.latent_channels, out_channels=codec.latent_channels, cond_channels=cond,
                   time_scale=1.0)  # the objective already scales time to [0, num_train_steps)
    changed = {k: (getattr(cfg.net, k), v) for k, v in derived.items() if getattr(cfg.net, k) != v}
    if changed:
        log.info("net channels derived from codec/conditioning: %s",
                 ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    return dataclasses.replace(cfg.net, **derived)


def net_divisor(cfg: ExperimentConfig, codec: LatentCodec | None = None) -> int:
    """The roi must divide by the codec's factor times the UNet's total downsampling."""
    levels = len(cfg.net.channels) - 1
    factor = max(codec.downsampling_factor) if codec is not None else 2**cfg.latent.levels
    return factor * 2**levels * cfg.net.stem_patch


def model_input(batch: dict[str, Any], cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(what the model generates in image space, region masks for conditioning or None)."""
    image = batch["image"].float()  # (B, M, D, H, W) in [-1, 1]
    regions = batch.get("label")
    if (cfg.conditioning.generate_labels or cfg.conditioning.mask) and regions is None:
        raise MedidiffError("this experiment uses label maps but the batch has none: are the cases labelled?")
    if regions is not None:
        regions = regions.float() * 2 - 1  # (B, 3, D, H, W) in {-1, 1}
    if cfg.conditioning.generate_labels or cfg.conditioning.generate_brain:
        parts = [image, *([regions] if cfg.conditioning.generate_labels else []),
                 *([brain_channel(image)] if cfg.conditioning.generate_brain else [])]
        return torch.cat(parts, dim=1), None
    return image, regions if cfg.conditioning.mask else None


def brain_channel(image: torch.Tensor) -> torch.Tensor:
    """(B, M, D, H, W) images in [-1, 1] -> (B, 1, D, H, W) brain mask in {-1, 1}: where any modality is
    above the background value -1 (skull-stripped data is exactly the background outside the brain;
    resampling's partial-volume edge voxels count as brain)."""
    return (image > -1.0).any(dim=1, keepdim=True).to(image.dtype) * 2 - 1


def split_generated(x: Any, cfg: ExperimentConfig) -> tuple[Any, Any]:
    """One decoded case (C, *S) in [-1, 1] (numpy) -> (its images (M, *S), its WT/TC/ET region channels
    (3, *S) or None). With ``conditioning.generate_brain`` both are cut to the background (-1) outside
    the generated brain mask's largest component, its holes filled: what skull stripping does to real
    cases, so no faint edge ramp or haze is left outside the brain (an empty mask: left uncut, warned)."""
    import numpy as np
    from scipy import ndimage

    m = len(cfg.data.modalities)
    images = x[:m]
    regions = x[m:m + NUM_REGIONS] if cfg.conditioning.generate_labels else None
    if cfg.conditioning.generate_brain:
        lab, n = ndimage.label(ndimage.binary_fill_holes(x[model_channels(cfg) - 1] > 0))
        if not n:  # a case would be all background, which no reader takes for an image: left as generated
            log.warning("a generated case's brain mask is empty: the case is left uncut")
            return images, regions
        brain = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
        images = np.where(brain, images, -1.0).astype(x.dtype)
        if regions is not None:
            regions = np.where(brain, regions, -1.0).astype(x.dtype)
    return images, regions


class DiffusionLoss:
    """loss_fn for :func:`medidiff.training.loop.fit`: encode, condition, objective loss.

    ``net`` is the DeepSpeed engine during training (the objective calls it once, like the
    denoiser) and the bare denoiser in validation.
    """

    def __init__(self, cfg: ExperimentConfig, codec: LatentCodec, objective: Any, text: Any = None) -> None:
        self.cfg, self.codec, self.objective, self.text = cfg, codec, objective, text
        names = getattr(codec, "channel_names", None)
        self.names = list(names) if names else [f"z{i}" for i in range(codec.latent_channels)]
        self._input_tumour: Any = None
        self._tumour_channels: torch.Tensor | None = None

    def tumour_channels(self, z: torch.Tensor) -> torch.Tensor | None:
        """(1, C, 1, 1, 1) 0/1 over the latent channels tumour_weight weighs (objective.tumour_weight_channels
        "images": the images' channels, the generated masks' 0), or None for all."""
        if self.cfg.objective.tumour_weight_channels == "all":
            return None
        if self._tumour_channels is None:  # built once: a host-to-device copy each step would stall the loop
            _, modalities = split_channel_names(self.names, "tumour_weight_channels")
            images = [float(m in self.cfg.data.modalities) for m in modalities]
            self._tumour_channels = torch.tensor(images, device=z.device).view(1, -1, 1, 1, 1)
        return self._tumour_channels

    def input_tumour(self, z: torch.Tensor) -> Any:
        """objective.tumour_map "input"'s map function, built once (its probe reads back to the host)."""
        if self._input_tumour is None:
            self._input_tumour = input_tumour_blocks(self.codec, self.names, z)
        return self._input_tumour

    def cond_of(self, regions: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if regions is None:
            return {}
        return {"cond_image": mask_to_latent_grid(self.codec, regions)}

    def __call__(self, net: torch.nn.Module, batch: dict[str, Any], gen: torch.Generator):
        null = background = edge = tumour = None
        with torch.no_grad():
            if "latent" in batch:  # from a latent cache: the codec never runs
                z = batch["latent"].float()  # (B, C', D', H', W')
                regions = batch["label"].float() * 2 - 1 if self.cfg.conditioning.mask else None
            else:
                x, regions = model_input(batch, self.cfg)
                z = self.codec.to(x.device).encode(x)  # (B, C', D', H', W')  (codecs are nn.Modules)
                images, factor = x[:, : batch["image"].shape[1]], self.codec.downsampling_factor
                if self.cfg.objective.background_weight != 1.0:  # (the config refused it with a latent cache)
                    background = background_blocks(images, factor)
                if self.cfg.objective.edge_weight != 1.0:
                    edge = edge_blocks(images, factor)
                if self.cfg.objective.tumour_weight != 1.0 and batch.get("label") is not None:  # (none: refused below)
                    tumour = on_channels(tumour_blocks(batch["label"], factor) if self.cfg.objective.tumour_map == "label"
                                         else self.input_tumour(z), self.tumour_channels(z))
            cond = self.cond_of(regions)
            if self.text is not None:  # cross-attention tokens of each case's prompt (cached)
                cond.update(self.text(batch["case_id"], device=z.device))
                null = self.text.null_cond(z.device)
        loss, per_channel = self.objective.loss(net, z, cond, generator=gen, null_cond=null, background=background,
                                                edge=edge, tumour=tumour)
        logs = group_by_band(per_channel, self.names)
        return loss, logs


# intensities at most this far above -1 count as background: the pipeline maps a skull-stripped scan's
# exact 0 outside the head to -1 (float rounding aside)
BACKGROUND_TOLERANCE = 1e-3


def background_blocks(images: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """(B, M, D, H, W) images in [-1, 1] -> (B, 1, D/f, H/f, W/f) float: 1 where every voxel of the
    latent position's block is background (<= -1 + BACKGROUND_TOLERANCE) in every modality, else 0.
    Volumes only (the codecs are 3D)."""
    factor = tuple(int(f) for f in factor)
    return -F.max_pool3d(-_outside(images), kernel_size=factor, stride=factor)  # a min-pool: the whole block


def _outside(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) float: 1 where a voxel is background in every modality, else 0."""
    return (images <= -1.0 + BACKGROUND_TOLERANCE).all(dim=1, keepdim=True).float()


def edge_blocks(images: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """(B, M, D, H, W) images in [-1, 1] -> (B, 1, D/f, H/f, W/f) float: 1 at the latent positions around the
    boundary between background (as :func:`background_blocks`) and the rest, else 0: a position is in the band
    when its 3x3x3 neighbourhood holds background voxels and non-background ones. That is every block holding
    both and its neighbours, and, where the boundary runs along block faces (or the factor is 1: pixel space),
    the blocks on either side of it, so the band covers a voxel-wide error inside or outside the boundary (an
    edge drawn too dark inside, or blurred outward)."""
    outside = _outside(images)
    return _near_blocks(outside, factor) * _near_blocks(1.0 - outside, factor)


def tumour_blocks(labels: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """(B, 3, D, H, W) WT/TC/ET masks in {0, 1} (the batch's ``label``) -> (B, 1, D/f, H/f, W/f) float: 1 at the
    latent positions whose block or a neighbouring block holds a WT voxel, else 0: the tumour with a block
    of the normal brain around it, so its contrast edge against the brain weighs with it."""
    return _near_blocks((labels[:, :1] > 0.5).float(), factor)


def input_tumour_blocks(codec: LatentCodec, names: Sequence[str], like: torch.Tensor):
    """objective.tumour_map ``input``: a function ``(x_t, signal) -> (B, 1, D', H', W')`` that reads the tumour
    blocks off the net's noisy input instead of the case's label: 1 where the generated WT mask's coarse band
    in ``x_t`` lies above the midpoint between a block all outside (-1) and all inside (+1) the tumour, scaled
    by the path's signal coefficient (x_t = signal x0 + noise), and at its 3x3x3 neighbours, as
    :func:`tumour_blocks`. A weight that is a function of x_t leaves the loss's optimum E[x0 | x_t] where it
    was (one from x0's label moves it toward tumours: objective.tumour_map). At low noise it is the label's
    block map; at high noise it is noise, which costs variance, not bias. ``like``: a latent of the run, for
    the device. Needs the WT mask generated with the images in a wavelet latent (conditioning.generate_labels)."""
    coarse = [i for i, name in enumerate(names[: getattr(codec, "in_channels", 0)]) if name.endswith(":WT")]
    if not coarse or not isinstance(codec, WaveletCodec):
        raise MedidiffError("objective.tumour_map: input reads the generated WT mask's coarse band in the net's "
                            "input: it needs conditioning.generate_labels and a wavelet latent (set tumour_map: label)")
    idx, factor = coarse[0], tuple(int(f) for f in codec.downsampling_factor)
    probe = torch.ones(2, codec.in_channels, *factor, device=like.device)
    probe[0] = -1.0
    with torch.no_grad():
        low, high = codec.to(like.device).encode(probe)[:, idx].flatten(1).mean(1).tolist()
    mid, sign = (low + high) / 2, (1.0 if high > low else -1.0)

    def blocks(x_t: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        a = signal.to(x_t.device, torch.float32).reshape(-1, 1, 1, 1, 1)
        above = (sign * (x_t[:, idx : idx + 1].float() - a * mid) > 0).float()
        return F.max_pool3d(above, kernel_size=3, stride=1, padding=1)

    return blocks


def on_channels(tumour: Any, channels: torch.Tensor | None) -> Any:
    """The tumour map (a tensor, or a function of (x_t, signal)) restricted to ``channels`` ((1, C, 1, 1, 1) 0/1:
    a (B, C, ...) map, 0 on the others), or as it is when ``channels`` is None."""
    if channels is None:
        return tumour
    if callable(tumour):
        return lambda x_t, signal: tumour(x_t, signal) * channels
    return tumour * channels


def _near_blocks(indicator: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """(B, 1, D, H, W) in {0, 1} -> (B, 1, D/f, H/f, W/f): 1 where the 3x3x3 neighbourhood of blocks holds a 1."""
    factor = tuple(int(f) for f in factor)
    return F.max_pool3d(F.max_pool3d(indicator, kernel_size=factor, stride=factor), kernel_size=3, stride=1, padding=1)


def group_by_band(per_channel: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Mean loss per sub-band (over modalities) and per modality (over sub-bands).

    Values are float32 0-d tensors on ``per_channel``'s device (one averaging matmul, no host sync:
    the training loop reads them only at log steps). The matmul runs outside autocast: under bf16
    autocast it rounded every value to 8 bits of mantissa.
    """
    keys, weights = _band_weights(tuple(names), per_channel.device)
    with torch.autocast(per_channel.device.type, enabled=False):
        means = weights @ per_channel.detach().float()
    return dict(zip(keys, means.unbind()))


@functools.lru_cache(maxsize=16)
def _band_weights(names: tuple[str, ...], device: torch.device) -> tuple[list[str], torch.Tensor]:
    """(group names, (groups, channels) averaging matrix on ``device``), built once per run."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(f"band/{name.partition(':')[0]}", []).append(i)
    for i, name in enumerate(names):
        groups.setdefault(f"modality/{name.partition(':')[2] or 'all'}", []).append(i)
    weights = torch.zeros(len(groups), len(names), dtype=torch.float32)
    for row, idx in enumerate(groups.values()):
        weights[row, idx] = 1.0 / len(idx)
    return list(groups), weights.to(device)


def cached_datasets(cfg: ExperimentConfig, codec: LatentCodec):
    """(train, val) from ``latent.cache``: stored latents of the codec at ``latent.path``, split by
    ``data.fold``; refused if the cache was encoded by another codec or data section."""
    from medidiff.latents.cache import LatentCacheDataset, cache_pipeline_hash, read_cache_manifest

    expected = cache_pipeline_hash(cfg.data, codec)
    folds = {c.get("fold") for c in read_cache_manifest(cfg.latent.cache)["cases"]}
    if cfg.data.fold is None:
        return LatentCacheDataset(cfg.latent.cache, cfg.latent.path, pipeline_hash=expected), None
    train = LatentCacheDataset(cfg.latent.cache, cfg.latent.path, pipeline_hash=expected,
                               folds=folds - {cfg.data.fold})
    val = LatentCacheDataset(cfg.latent.cache, cfg.latent.path, pipeline_hash=expected, folds={cfg.data.fold})
    return train, (val if len(val) else None)


def uses_labels(cfg: ExperimentConfig) -> bool:
    """Whether the model reads label maps (it generates them, or is conditioned on them)."""
    return cfg.data.label_mode != "none" and (cfg.conditioning.generate_labels or cfg.conditioning.mask)


def build_datasets(cfg: ExperimentConfig, run_dir: Path, *, train_random: Sequence[Any] | None = None,
                   with_label: bool | None = None):
    """(train, held-out or None: also None without held-out losses, ``train.val_every`` 0) datasets on a
    grid the net and codec divide; ``train_random``
    replaces the training set's augmentation steps (see ``manifest_datasets``). ``with_label``
    defaults to whether ``data.label_mode`` names labels."""
    codec = load_codec(cfg.latent.path) if cfg.latent.type == "pretrained" else None  # its factor sets the divisor
    # no held-out losses (train.val_every 0, as configs/anatomy_2mm.yaml): the fold is not decoded (372 anatomy
    # cases, 10 s of each quality_scale arm on the GPU host, representation_row_h100_20261206)
    return manifest_datasets(cfg.data, run_dir, divisor=net_divisor(cfg, codec),
                             with_label=cfg.data.label_mode != "none" if with_label is None else with_label,
                             train_random=train_random, heldout=cfg.train.val_every > 0)


def fit_codec_stats(codec: Any, dataset, cfg: ExperimentConfig) -> None:
    loader = DataLoader(dataset, batch_size=max(1, cfg.train.micro_batch), shuffle=False, collate_fn=collate_cases)
    codec.fit_stats((model_input(b, cfg)[0] for b in loader), max_batches=cfg.latent.stats_batches)


def train_diffusion(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False,
                    progress: bool = True) -> FitResult:
    """Train the diffusion stage described by ``cfg``; returns the loop's result."""
    run_dir = claim_run_dir(run_dir_of(cfg), resume=resume, overwrite=overwrite)  # before anything is written
    main = process_rank() == 0  # shared files are written once, by rank 0
    if main:
        save_resolved(cfg, run_dir)
    if cfg.latent.cache:
        train_set, val_set = cached_datasets(cfg, load_codec(cfg.latent.path))
    else:
        # an image-only model loads no labels: at 128^3 they were 3 float32 channels a case, 3x the
        # bytes of a one-modality image, collated, pinned and copied every step for nothing
        check_scale_labels(cfg.data, uses_labels(cfg), "an image-only model (no generated labels, no mask conditioning)")
        train_set, val_set = build_datasets(cfg, run_dir, with_label=uses_labels(cfg))

    codec_dir = run_dir / "codec"
    if resume and (codec_dir / "config.json").is_file():
        codec = load_codec(codec_dir)  # the statistics the checkpoints were trained with
    else:
        codec = build_codec_for(cfg)
        if cfg.latent.type == "wavelet" and cfg.latent.fit_stats:
            fit_codec_stats(codec, train_set, cfg)
        if main:
            codec.save_pretrained(codec_dir)
    net_cfg = resolve_net_config(cfg, codec)
    text, text_record = build_text_conditioner(cfg, run_dir)
    if text is not None:
        net_cfg = net_config_for_text(net_cfg, text.encoder)
    torch.manual_seed(cfg.seed)
    net = build_net(net_cfg)
    objective = build_objective(cfg.objective, getattr(codec, "channel_names", None))
    loss_fn = DiffusionLoss(cfg, codec, objective, text)
    record = {"config": to_dict(cfg), "config_defaults": to_dict(type(cfg)()),  # for resume: _check_resumable
              "config_hash": config_hash(cfg), "net": to_dict(net_cfg),
              "codec": to_dict(codec.config), "kind": "medidiff.diffusion", "text_encoder": text_record}

    return fit(
        net, loss_fn, train_set, cfg.train, run_dir=run_dir, seed=cfg.seed, resume=resume, record=record,
        collate_fn=collate_cases, val_fn=validation_loss_fn(val_set, loss_fn, cfg), progress=progress,
        preview_fn=make_preview_fn(cfg, codec, objective, train_set), num_workers=cfg.data.num_workers,
        tracking=cfg.log,
    )


def build_text_conditioner(cfg: ExperimentConfig, run_dir: Path) -> tuple[Any, dict[str, Any] | None]:
    """The frozen text encoder (outside the engine) and every training case's prompt, encoded once
    up front so training steps only read the embedding cache; (None, None) without text."""
    t = cfg.conditioning.text
    if not t.enabled:
        return None, None
    from medidiff.conditioning.prompts import prompts_for_manifest
    from medidiff.conditioning.text import TextConditioner, TextEncoder

    encoder = TextEncoder.from_pretrained(t.encoder, max_length=t.max_length,
                                          cache_dir=t.cache_dir or run_dir / "text_cache")
    prompts = prompts_for_manifest(cfg.data.manifest, cfg.data.root or None, include=t.facts, source=t.prompts)
    text = TextConditioner(encoder, prompts)
    text.warm()
    record = {"path": str(Path(t.encoder).absolute()), "hash": encoder.encoder_hash,
              "hidden_size": encoder.hidden_size, "max_length": t.max_length}
    return text, record


def validation_loss_fn(val_set: Any, loss_fn: Any, cfg: ExperimentConfig):
    """``val_fn`` for :func:`fit`: the loss summed over this rank's shard of the held-out set, with
    a fixed seed per batch (by its first item's index, so values are comparable across steps
    and numbers of ranks for micro_batch 1); None without a held-out set."""
    if val_set is None:
        return None

    def val_fn(module: torch.nn.Module, rank: int, world_size: int) -> tuple[dict[str, float], int]:
        part = shard(val_set, rank, world_size)
        loader = DataLoader(part, batch_size=cfg.train.micro_batch, shuffle=False, collate_fn=collate_cases)
        device = next(module.parameters()).device
        total, n = 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                first = rank + i * cfg.train.micro_batch * world_size  # the batch's first item in val_set
                gen = torch.Generator(device=device).manual_seed(cfg.seed + first)
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                total += float(loss_fn(module, batch, gen)[0])
                n += 1
        return {"loss": total}, n

    return val_fn


def make_preview_fn(cfg: ExperimentConfig, codec: LatentCodec, objective: Any, train_set: Any):
    """``preview_fn`` for :func:`fit`: one sample (seed ``cfg.seed``) from the EMA weights as a
    tri-planar PNG (:func:`~medidiff.viz.preview_image`: every modality, the generated or
    conditioning labels overlaid, a legend), written to ``RUN/previews/step_XXXXXXXX.png`` and
    returned. Mask-conditioned models use the first training case's mask."""
    from medidiff.generation import image_space_clamp, regions_to_labels
    from medidiff.samplers import sample
    from medidiff.viz import preview_image, write_png

    def preview(step: int, module: torch.nn.Module, out_dir: Path) -> Path:
        device = next(module.parameters()).device
        x_shape = (codec.in_channels, *(r // cfg.data.downsample for r in cfg.data.roi))
        cond, regions = None, None
        if cfg.conditioning.mask:
            regions = collate_cases([train_set[0]])["label"].float().to(device)  # (1, 3, *S) in {0, 1}
            cond = {"cond_image": mask_to_latent_grid(codec, regions * 2 - 1)}
        sampler = dataclasses.replace(cfg.sampler, num_steps=min(cfg.sampler.num_steps, 20), clip_x0=False)
        clamp = image_space_clamp(codec) if cfg.sampler.clip_x0 else None
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z = sample(objective, module, (1, *codec.latent_shape(x_shape)), config=sampler, seeds=[cfg.seed],
                           cond=cond, device=device, x0_transform=clamp)
                x = codec.decode(z.float()).clamp(-1, 1)[0].cpu().numpy()  # (C, *S)
        finally:
            module.train(was_training)
        images, generated = split_generated(x, cfg)
        if generated is not None:
            label = regions_to_labels(generated)
        elif regions is not None:
            label = regions_to_labels(regions[0].cpu().numpy())
        else:
            label = None
        return write_png(Path(out_dir) / f"step_{step:08d}.png",
                         preview_image(list(images), label, modalities=cfg.data.modalities))

    return preview
