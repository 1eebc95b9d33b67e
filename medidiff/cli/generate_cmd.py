"""`medidiff generate`: synthetic cases as NIfTI with labels, previews and provenance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError

if TYPE_CHECKING:
    import torch

    from medidiff.samplers.config import SamplerConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate synthetic cases from a trained model")
    p.add_argument("--model", required=True, help="model folder (from `medidiff export` or RUN/model)")
    p.add_argument("--sr-model", help="super-resolution model folder: cascade the base model to the full grid")
    p.add_argument("--masks", help="label maps for mask-conditioned models: a folder of label NIfTIs on the "
                                   "model grid (case i uses file i mod n, sorted by name), or a manifest whose "
                                   "labelled cases go through the model's data pipeline")
    p.add_argument("--reference", help="a manifest: write cases in a real case's grid (its affine, spacing and "
                                       "shape; the inverse of the data pipeline) instead of --geometry")
    p.add_argument("--reference-case", help="case id in --reference (default: its first case)")
    p.add_argument("--root", help="data root of --masks/--reference manifests (default: the manifest's folder)")
    p.add_argument("--num", type=int, required=True, help="number of cases")
    p.add_argument("--out", required=True, help="output folder: case_XXXX/{t1n,t1c,t2w,t2f,seg}.nii.gz")
    p.add_argument("--prompts", help="text-conditioned models: a file with one prompt per line "
                                     "(one line for all cases, or exactly --num lines)")
    p.add_argument("--text-encoder", help="local text encoder folder (default: the path recorded with the model)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's sampler config; with "
                   "--sr-model, the base model's)")
    p.add_argument("--sr-steps", type=int, help="the SR stage's sampling steps (default: the SR model's config)")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "euler", "heun"])
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="case i uses seed + i (regenerate any single case)")
    p.add_argument("--batch", type=int, default=1, help="cases per forward batch")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--geometry", choices=["native", "brats"], default="native",
                   help="native: the model grid; brats: 240x240x155, 1 mm, BraTS affine")
    p.add_argument("--no-progress", action="store_true")
    add_dry_run(p)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    if args.num < 1 or args.batch < 1:
        raise MedidiffError("--num and --batch must be >= 1")
    if args.sr_steps is not None and not args.sr_model:
        raise MedidiffError("--sr-steps needs --sr-model")
    for flag in ("steps", "sr_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise MedidiffError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    _check_model_samplers(args)  # before any weights are read or any output is written; --dry-run too
    if dry_run(args, options_of(args)):
        return 0
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from medidiff.generation import DiffusionPipeline, place_in_grid
    from medidiff.io import write_nifti
    from medidiff.viz import triplanar, write_png

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MedidiffError(f"--device {args.device}: no CUDA device on this machine; use --device cpu")
    if args.sr_model:
        from medidiff.cascade.pipeline import CascadePipeline

        pipe = CascadePipeline.from_pretrained(args.model, args.sr_model, device=args.device,
                                               text_encoder=args.text_encoder)
    else:
        pipe = DiffusionPipeline.from_pretrained(args.model, device=args.device, text_encoder=args.text_encoder)
    masks, mask_files = (None, [])
    if args.masks and args.masks.endswith(".json"):
        masks, mask_files = masks_from_manifest(args.masks, args.root, pipe.cfg)
    elif args.masks:
        masks, mask_files = load_masks(args.masks, tuple(pipe.image_shape[1:]))
    geometry = args.geometry
    if args.reference:
        from medidiff.data.manifest import label_map_of, load_manifest, read_manifest
        from medidiff.generation import reference_grid

        items = load_manifest(args.reference, args.root)
        chosen = [it for it in items if args.reference_case in (None, it["case_id"])]
        if not chosen:
            raise MedidiffError(f"--reference {args.reference}: no case {args.reference_case!r}")
        geometry = reference_grid(chosen[0], pipe.cfg, label_map=label_map_of(read_manifest(args.reference)))
    prompts = None
    if args.prompts:
        from medidiff.conditioning.text import read_prompts_file

        prompts = read_prompts_file(args.prompts, args.num)
    if pipe.cfg.conditioning.mask and masks is None:
        raise MedidiffError("this model is mask-conditioned: give --masks (a folder of label maps)")
    sampler = sampler_of(args, pipe.sampler_config)  # a cascade's base sampler; the SR stage keeps its own
    sr_kwargs: dict[str, SamplerConfig] = {}
    if args.sr_steps:
        sr_kwargs["sr_sampler"] = replace(pipe.sr.sampler_config, num_steps=args.sr_steps)
    out = Path(args.out)
    with_label = pipe.cfg.conditioning.generate_labels or pipe.cfg.conditioning.mask
    names = [*pipe.cfg.data.modalities, *(["seg"] if with_label else [])]
    todo = []
    for i in range(args.num):
        case = out / f"case_{i:04d}"
        if all((case / f"{n}.nii.gz").is_file() for n in names) and (case / "provenance.json").is_file():
            continue  # finished by an earlier run
        todo.append(i)
    skipped = args.num - len(todo)
    spacing = [s * pipe.cfg.data.downsample for s in pipe.cfg.data.spacing]
    bar = tqdm(total=len(todo), desc="generate", unit="case", disable=args.no_progress)
    import json

    for start in range(0, len(todo), args.batch):
        idx = todo[start:start + args.batch]
        batch_masks = None
        if masks is not None:
            import torch as _t

            batch_masks = _t.stack([masks[i % len(masks)] for i in idx])
        cases = pipe([args.seed + i for i in idx], sampler=sampler, masks=batch_masks, **sr_kwargs,
                     prompts=None if prompts is None else [prompts[i] for i in idx])
        for i, gen in zip(idx, cases):
            case = out / f"case_{i:04d}"
            prov = {**pipe.provenance(gen.seed, sampler, **sr_kwargs), "case": case.name,
                    "geometry": f"reference {chosen[0]['case_id']}" if args.reference else args.geometry}
            if gen.prompt is not None:
                prov["prompt"] = gen.prompt
            if mask_files:
                prov["mask"] = str(mask_files[i % len(mask_files)])
            shown = []
            for m, name in enumerate(gen.modalities):
                vol = (gen.images[m] + 1) / 2  # [0, 1], background 0 like skull-stripped BraTS
                vol, affine = place_in_grid(vol, spacing, geometry)
                write_nifti(case / f"{name}.nii.gz", vol, affine, provenance=prov)
                shown.append(vol)
            label = gen.label
            if label is not None:
                label, affine = place_in_grid(label, spacing, geometry, label=True)
                write_nifti(case / "seg.nii.gz", label.astype("uint8"), affine, provenance=prov)
            write_png(case / "preview.png", triplanar(shown, label))
            (case / "provenance.json").write_text(json.dumps(prov, indent=2))
            bar.update(1)
    bar.close()
    print(f"{len(todo)} case(s) written to {out}" + (f", {skipped} already there (skipped)" if skipped else ""))
    return 0


def sampler_of(args: argparse.Namespace, sampler: SamplerConfig) -> SamplerConfig:
    """The model's sampler with --sampler/--steps/--guidance applied."""
    from dataclasses import replace

    from medidiff.config import ConfigError

    try:
        if args.sampler:
            sampler = replace(sampler, name=args.sampler, eta=0.0 if args.sampler != "ddim" else sampler.eta)
        if args.steps:
            sampler = replace(sampler, num_steps=args.steps)
        if args.guidance is not None:
            sampler = replace(sampler, guidance_scale=args.guidance)
    except ValueError as exc:  # SamplerConfig's own checks (e.g. a DDPM spacing with --sampler euler)
        raise ConfigError(f"--sampler/--steps/--guidance: {exc}") from None
    return sampler


def _check_model_samplers(args: argparse.Namespace) -> None:
    """The model folders' configs and the samplers this run would use pass the experiment checks
    (ExperimentConfig.check_sampler); reads config.json only."""
    from dataclasses import replace

    from medidiff.generation import KIND, read_model_config

    cfg, _ = read_model_config(args.model, KIND)
    cfg.check_sampler(sampler_of(args, cfg.sampler))
    if args.sr_model:
        from medidiff.cascade.sr_task import KIND as SR_KIND

        sr_cfg, _ = read_model_config(args.sr_model, SR_KIND)
        if args.sr_steps:
            sr_cfg.check_sampler(replace(sr_cfg.sampler, num_steps=args.sr_steps), "sr_sampler")


def masks_from_manifest(path: str, root: str | None, cfg) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, *grid) WT/TC/ET masks of a manifest's labelled cases, through the model's data pipeline."""
    import dataclasses

    import numpy as np
    import torch

    from medidiff.data.brats import REGIONS
    from medidiff.data.manifest import label_map_of, load_manifest, read_manifest
    from medidiff.data.masks import model_grid_labels

    items = [it for it in load_manifest(path, root) if it.get("label")]
    if not items:
        raise MedidiffError(f"--masks {path}: no labelled cases")
    data = dataclasses.replace(cfg.data, label_mode="regions", flip_prob=0.0)
    labels = model_grid_labels(items, data, label_map=label_map_of(read_manifest(path)))
    masks = torch.stack([torch.from_numpy(np.stack([np.isin(lab, v) for v in REGIONS.values()]).astype(np.float32))
                         for lab in labels])
    return masks, [f"{path}#{it['case_id']}" for it in items]


def load_masks(folder: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, list[Path]]:
    """(N, 3, *shape) WT/TC/ET masks from label maps (labels {0,1,2,3}) on the model's output grid,
    and the files they came from (sorted by name)."""
    import nibabel as nib
    import numpy as np
    import torch

    from medidiff.data.brats import LABEL_VALUES, REGIONS
    from medidiff.errors import DataError

    files = sorted(Path(folder).glob("*.nii*"))
    if not files:
        raise MedidiffError(f"--masks {folder}: no .nii/.nii.gz label maps found")
    out = []
    for f in files:
        try:
            label = np.asarray(nib.as_closest_canonical(nib.load(str(f))).dataobj)
        except Exception as exc:  # nibabel raises many types for bad files
            raise DataError(f, f"unreadable label map ({type(exc).__name__}: {exc})") from exc
        if label.shape != shape:
            raise DataError(f, f"label map has shape {label.shape}; the model generates {shape} (RAS): "
                               "resample it to the model grid first")
        values = set(np.unique(label).tolist())
        if not values <= set(LABEL_VALUES):
            raise DataError(f, f"labels {sorted(values - set(LABEL_VALUES))} outside {list(LABEL_VALUES)}")
        out.append(torch.from_numpy(np.stack([np.isin(label, v) for v in REGIONS.values()]).astype(np.float32)))
    return torch.stack(out), files
