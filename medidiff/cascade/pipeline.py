"""Super-resolution and cascade pipelines: low-res volume -> full-resolution volume, and base + SR.

An SR model folder (written by :func:`medidiff.cascade.sr_task.export_sr`)::

    MODEL/config.json          {"kind": "medidiff.sr", "config": <experiment>, "net": ..., "codec": ...}
    MODEL/model.safetensors    denoiser weights (EMA by default)
    MODEL/codec/               the latent codec with its fitted statistics

loads with :meth:`SRPipeline.from_pretrained` on a CPU-only machine (no DeepSpeed, no torch.load).
:class:`CascadePipeline` chains a :class:`~medidiff.generation.DiffusionPipeline` base model (on the
low-resolution grid) and an :class:`SRPipeline`, with the same call as the base pipeline, so
``medidiff generate`` can use either.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function

from medidiff.cascade.patches import Window, patchwise_denoiser
from medidiff.cascade.sr_task import KIND, latent_patch, sr_condition
from medidiff.config import config_hash
from medidiff.data.brats import REGIONS, regions_from_labels
from medidiff.data.config import intensity_scale
from medidiff.data.labels import block_majority_regions
from medidiff.errors import MedidiffError
from medidiff.experiment import ExperimentConfig
from medidiff.generation import (DiffusionPipeline, GeneratedCase, ModelPipeline, image_space_clamp, regions_to_labels,
                                 sampler_extras)
from medidiff.samplers import SAMPLERS, Guidance, generators_from_seeds, sampling_grid, step_generators
from medidiff.samplers.config import TAKES_ETA, SamplerConfig
from medidiff.training.diffusion import NUM_REGIONS
from medidiff.training.sampler import derive_seed
from medidiff.utils.tensor import randn_per_sample

__all__ = ["SRPipeline", "CascadePipeline", "StartNoise", "sr_seed"]

_SR_STREAM = 0x5352  # "SR": salt that separates the SR stage's random stream from the base model's


def sr_seed(seed: int) -> int:
    """The SR stage's seed for case ``seed``: unrelated to the base model's stream of the same seed."""
    return derive_seed(int(seed), _SR_STREAM)


@dataclass
class StartNoise:
    """The SR stage's noise that does not depend on the low-resolution input, drawn ahead
    (:meth:`SRPipeline.starting_noise`): each case's conditioning augmentation and starting latent
    from its seed's CPU generator (the same numbers on every machine), and those generators as the
    draws left them (they seed the per-step noise)."""

    seeds: tuple[int, ...]
    augmentation: Tensor  # (B, C, *low-res grid), CPU (pinned when the pipeline runs on CUDA)
    latent: Tensor  # (B, C', *latent grid), CPU (pinned when the pipeline runs on CUDA)
    generators: list[torch.Generator]  # the per-step noise is seeded from them: use a StartNoise once
    used: bool = False


class SRPipeline(ModelPipeline):
    """A trained SR denoiser + codec + objective: ``sr(low_res, seeds) -> high_res``."""

    KIND = KIND

    @property
    def scale(self) -> int:
        return self.cfg.cascade.scale

    @property
    def high_res_shape(self) -> tuple[int, ...]:
        """(C, X, Y, Z) of the output: modalities (+ WT/TC/ET) on the full grid ``data.roi``."""
        return (self.codec.in_channels, *map(int, self.cfg.data.roi))

    @property
    def low_res_shape(self) -> tuple[int, ...]:
        c, *spatial = self.high_res_shape
        return (c, *(s // self.scale for s in spatial))

    def provenance(self, sampler: SamplerConfig | None = None) -> dict[str, Any]:
        sampler = sampler or self.cfg.sampler
        return {"sr_model_hash": self.model_hash, "sr_config_hash": config_hash(self.cfg), "sr_experiment": self.cfg.name,
                "sr_scale": self.scale, "sr_sampler": sampler.name, "sr_steps": sampler.num_steps,
                "sr_objective": self.cfg.objective.type, **sampler_extras(sampler, "sr_")}

    @torch.no_grad()
    def __call__(
        self,
        low_res: Tensor | np.ndarray,
        seeds: Sequence[int],
        *,
        masks: Tensor | None = None,
        sampler: SamplerConfig | None = None,
        mode: Literal["whole", "patches"] | None = None,
        aug_level: float | None = None,
        patch_size: Sequence[int] | None = None,
        overlap: float | None = None,
        window: Window | None = None,
        start: StartNoise | None = None,
    ) -> Tensor:
        """Super-resolve ``low_res`` (B, C, *roi/scale) in [-1, 1] -> (B, C, *roi) in [-1, 1] (float32, CPU).

        C = modalities (+ WT/TC/ET masks in {-1, 1} for label-generating experiments). masks
        (B, 3, *roi) in {0, 1} are required iff the model is mask-conditioned. Sample i depends
        only on ``seeds[i]`` (augmentation noise, initial and per-step noise all come from its
        generator and live on the full grid), so 'whole' and 'patches' sample the same volume.
        ``mode``, ``aug_level``, ``patch_size`` (image voxels), ``overlap`` and ``window`` default
        to the ``cascade`` config. ``start``: :meth:`starting_noise` of ``seeds``, drawn ahead (the
        cascade draws it while the base samples); the result is the same as without it.
        """
        c_cfg = self.cfg.cascade
        sampler = sampler or self.cfg.sampler
        self.cfg.check_sampler(sampler, "sr_sampler")
        mode = mode or c_cfg.sample_mode
        aug_level = c_cfg.sample_aug_level if aug_level is None else float(aug_level)
        dev = self.device
        low = torch.as_tensor(low_res).float().to(dev)
        c, *hr = self.high_res_shape
        if tuple(low.shape[1:]) != self.low_res_shape or low.shape[0] != len(seeds):
            raise MedidiffError(f"low-res volumes have shape {tuple(low.shape)}; expected "
                                f"({len(seeds)}, {', '.join(map(str, self.low_res_shape))}) (one per seed, grid "
                                f"data.roi / cascade.scale = {list(self.low_res_shape[1:])})")
        regions = None
        if self.cfg.conditioning.mask:
            if masks is None:
                raise MedidiffError("this SR model is mask-conditioned: give the full-resolution masks")
            if tuple(masks.shape) != (len(seeds), NUM_REGIONS, *hr):
                raise MedidiffError(f"masks have shape {tuple(masks.shape)}; expected ({len(seeds)}, 3, {', '.join(map(str, hr))})")
            regions = torch.as_tensor(masks).to(dev).float() * 2 - 1
        elif masks is not None:
            raise MedidiffError("this SR model was not trained with mask conditioning: drop masks")

        b = len(seeds)
        with record_function("medidiff/sr_condition"):  # profiler ranges: where a case's time goes
            start = start or self.starting_noise(seeds)
            if start.seeds != tuple(int(s) for s in seeds) or start.used:
                raise ValueError(f"start noise drawn for seeds {list(start.seeds)}{' (used already)' if start.used else ''}, "
                                 f"given seeds {list(seeds)}: draw it with starting_noise(seeds), once per call")
            start.used = True
            gens = start.generators
            level = torch.full((b,), aug_level, device=dev)
            noise = start.augmentation.to(dev, non_blocking=True)  # (B, C, *lr) conditioning augmentation
            cond = sr_condition(self.codec, low, level=level, noise=noise, hr_spatial=tuple(hr), regions=regions)
            latent = self.codec.latent_shape((c, *hr))
            x = start.latent.to(dev, non_blocking=True)  # (B, C', *latent): one noise for the full grid
        # the grid of the patch size the net was trained on (matters only with objective.time_shift)
        ts = sampling_grid(self.objective, sampler, latent_patch(c_cfg.patch_size, self.codec))
        denoiser = self.objective.denoiser(self.net)
        if mode == "patches":
            patch = latent_patch(tuple(patch_size or c_cfg.inference_patch), self.codec)
            denoiser = patchwise_denoiser(denoiser, patch, overlap=c_cfg.sample_overlap if overlap is None else overlap,
                                          window=window or c_cfg.blend, batch_size=c_cfg.patch_batch)
        elif mode == "whole":
            m = self.net_cfg.size_multiple
            if any(s % m for s in latent[1:]):
                raise MedidiffError(f"whole-volume SR: latent grid {list(latent[1:])} not divisible by the net's size "
                                    f"multiple {m}; use mode='patches' (cascade.sample_mode: patches)")
        else:
            raise ValueError(f"mode must be 'whole' or 'patches', got {mode!r}")
        guidance = (Guidance(sampler.guidance_scale, None, self.cfg.objective.cond_drop_keys)
                    if sampler.guidance_scale != 1.0 else None)
        # clamp x0 in image space, not on normalised latent coefficients (WDM clamps after the IDWT)
        x0_transform = image_space_clamp(self.codec) if sampler.clip_x0 else None
        extra: dict[str, Any] = {"eta": sampler.eta} if sampler.name in TAKES_ETA else {}
        with record_function("medidiff/sr_sample"):
            z = SAMPLERS[sampler.name](denoiser, x, ts, cond=cond, guidance=guidance,
                                       generators=step_generators(gens, dev), x0_transform=x0_transform, **extra)
        with record_function("medidiff/sr_decode"):
            y = self.codec.decode(z).clamp(-1, 1).float()  # (B, C, *roi)
            if y.device.type != "cuda":
                return y.cpu()
            # into page-locked memory: the pageable copy of a full case (7 x 240 x 240 x 160 float32,
            # 258 MB) took 210 ms on the H200 host (cascade_h200x2_20261130); torch caches the buffer
            host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            return host.copy_(y)

    def starting_noise(self, seeds: Sequence[int]) -> StartNoise:
        """The noise :meth:`__call__` draws for ``seeds`` before sampling, in the same order from the
        same CPU generators. A full-grid starting latent is large (64.5M numbers for a 240^3-class
        case: 0.46 s of CPU RNG and pageable copies a case on the H200 host, issue 15), and it does
        not depend on the low-resolution input, so the cascade draws it while the base samples."""
        gens = generators_from_seeds(seeds)
        b, (c, *hr) = len(seeds), self.high_res_shape
        pin = self.device.type == "cuda"  # page-locked: the copies to the card run without a staging buffer
        aug = randn_per_sample((b, *self.low_res_shape), gens, device="cpu", pin_memory=pin)
        latent = randn_per_sample((b, *self.codec.latent_shape((c, *hr))), gens, device="cpu", pin_memory=pin)
        return StartNoise(tuple(int(s) for s in seeds), aug, latent, gens)


class CascadePipeline:
    """Base model on the low-resolution grid, then SR to the full grid; called like DiffusionPipeline.

    ``cfg`` is the SR stage's experiment (full-resolution grid, spacing, modalities,
    conditioning), so code written for a DiffusionPipeline (``medidiff generate``) works unchanged.
    """

    def __init__(self, base: DiffusionPipeline, sr: SRPipeline) -> None:
        self.base, self.sr = base, sr
        # draw the SR stage's starting noise on a second thread while the base samples: None = on an
        # accelerator only (on a CPU the two compete for the cores); the result is the same either way
        self.draw_ahead: bool | None = None
        b, s = base.cfg, sr.cfg
        problems = []
        if list(b.data.modalities) != list(s.data.modalities):
            problems.append(f"modalities differ: base {b.data.modalities}, SR {s.data.modalities}")
        for key in ("generate_labels", "mask"):
            if getattr(b.conditioning, key) != getattr(s.conditioning, key):
                problems.append(f"conditioning.{key} differs: base {getattr(b.conditioning, key)}, "
                                f"SR {getattr(s.conditioning, key)}")
        base_grid = list(base.image_shape[1:])
        if [g * sr.scale for g in base_grid] != list(s.data.roi):
            problems.append(f"base grid {base_grid} x cascade.scale {sr.scale} != SR data.roi {list(s.data.roi)}: "
                            f"train the base with data.roi {list(s.data.roi)} and data.downsample {sr.scale}")
        base_mm = [sp * b.data.downsample for sp in b.data.spacing]
        sr_mm = [sp * sr.scale for sp in s.data.spacing]
        if not np.allclose(base_mm, sr_mm):
            problems.append(f"voxel sizes differ: base {base_mm} mm, SR low-res grid {sr_mm} mm")
        if intensity_scale(b.data) != intensity_scale(s.data):  # the SR stage reads the base's images as its own
            problems.append(f"intensity scales differ: base {intensity_scale(b.data)}, SR {intensity_scale(s.data)}")
        if b.data.fold != s.data.fold:
            # masks are chosen from, and evaluations hold out, ONE fold (the cascade's cfg is the SR
            # stage's): a base model that trained on the SR stage's held-out fold would leak it
            problems.append(f"data.fold differs: base {b.data.fold}, SR {s.data.fold} (train both stages with "
                            "the same held-out fold)")
        if problems:
            raise MedidiffError("base and SR models do not chain: " + "; ".join(problems))

    @classmethod
    def from_pretrained(cls, base_dir: str | Path, sr_dir: str | Path, *, device: str | torch.device = "cpu",
                        text_encoder: str | Path | None = None) -> CascadePipeline:
        return cls(DiffusionPipeline.from_pretrained(base_dir, device=device, text_encoder=text_encoder),
                   SRPipeline.from_pretrained(sr_dir, device=device))

    def compile(self) -> CascadePipeline:
        """Both stages' denoisers compiled (:meth:`ModelPipeline.compile`)."""
        self.base.compile()
        self.sr.compile()
        return self

    @property
    def cfg(self) -> ExperimentConfig:
        return self.sr.cfg

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.sr.high_res_shape

    @property
    def sampler_config(self) -> SamplerConfig:
        """What ``sampler`` drives and defaults to: the base model's sampler (``cfg`` is the SR
        stage's, whose sampler is ``sr_sampler``'s default)."""
        return self.base.sampler_config

    def provenance(self, seed: int, sampler: SamplerConfig, sr_sampler: SamplerConfig | None = None) -> dict[str, Any]:
        return {**self.base.provenance(seed, sampler), **self.sr.provenance(sr_sampler),
                "generator": "medidiff.CascadePipeline", "sr_seed": sr_seed(seed)}

    @torch.no_grad()
    def __call__(self, seeds: Sequence[int], *, masks: torch.Tensor | None = None,
                 prompts: Sequence[str] | None = None,
                 sampler: SamplerConfig | None = None, sr_sampler: SamplerConfig | None = None,
                 **sr_options: Any) -> list[GeneratedCase]:
        """Generate one full-resolution case per seed.

        masks: (B, 3, *roi) WT/TC/ET in {0, 1} on the full grid, required iff mask-conditioned (the
        base gets them downsampled by its data pipeline's label rule, ``block_majority_regions``).
        ``sampler`` drives the base model, ``sr_sampler`` (default: the SR model's) the SR stage;
        ``sr_options`` go to :meth:`SRPipeline.__call__` (mode, aug_level, patch_size, overlap,
        window). Labels come from the SR output's region channels (label-generating models) or
        from the given masks.
        """
        scale, m = self.sr.scale, len(self.cfg.data.modalities)
        base_masks = None
        if masks is not None:
            masks = torch.as_tensor(masks).float()
            if masks.ndim != 5 or masks.shape[1] != NUM_REGIONS:
                raise MedidiffError(f"masks must be (B, 3, X, Y, Z) WT/TC/ET, got {tuple(masks.shape)}")
            base_masks = block_majority_regions(masks, scale).float()  # the base stage's own rule
        sr_seeds = [sr_seed(s) for s in seeds]
        # on an accelerator the SR stage's starting noise (CPU generators) is drawn on a second thread
        # while the base samples (torch releases the GIL); on a CPU the two would compete for the cores
        ahead = self.sr.device.type != "cpu" if self.draw_ahead is None else self.draw_ahead
        with ThreadPoolExecutor(max_workers=1) as pool:
            start = pool.submit(self.sr.starting_noise, sr_seeds) if ahead else None
            low_cases = self.base(seeds, masks=base_masks, sampler=sampler, prompts=prompts)
            start_noise = start.result() if start is not None else None
        low = []
        with record_function("medidiff/base_to_sr"):
            for case in low_cases:
                chans = [torch.from_numpy(case.images)]
                if self.cfg.conditioning.generate_labels:
                    reg = regions_from_labels(case.label)
                    chans.append(torch.from_numpy(np.stack([reg[r] for r in REGIONS])).float() * 2 - 1)
                low.append(torch.cat(chans))
        high = self.sr(torch.stack(low), sr_seeds, masks=masks, sampler=sr_sampler, start=start_noise,
                       **sr_options).numpy()  # (B, C, *roi)
        out = []
        for i, seed in enumerate(seeds):
            if self.cfg.conditioning.generate_labels:
                with record_function("medidiff/labels"):
                    label = regions_to_labels(high[i, m:m + NUM_REGIONS])
            elif masks is not None:
                label = regions_to_labels(masks[i].numpy())
            else:
                label = None
            out.append(GeneratedCase(seed=int(seed), images=high[i, :m], label=label,
                                     modalities=list(self.cfg.data.modalities), prompt=low_cases[i].prompt))
        return out

