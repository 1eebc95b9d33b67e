"""`medidiff generate`: synthetic cases as NIfTI with labels, previews and provenance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.errors import MedidiffError

if TYPE_CHECKING:
    import torch

    from medidiff.data.mask_sources import MaskSource
    from medidiff.samplers.config import SamplerConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate synthetic cases from a trained model")
    p.add_argument("--model", required=True, help="model folder (from `medidiff export` or RUN/model)")
    p.add_argument("--sr-model", help="super-resolution model folder: cascade the base model to the full grid")
    p.add_argument("--masks", help="label maps for mask-conditioned models: a folder of label NIfTIs on the "
                                   "model grid (case i uses file i mod n, sorted by name), or a manifest whose "
                                   "labelled cases go through the model's data pipeline")
    p.add_argument("--mask-folds", type=int, nargs="+", help="with a --masks manifest: take masks only from these "
                   "folds (default: the folds the model trained on; needs --masks to be the model's own manifest)")
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
    if dry_run(args, options_of(args)):
        return 0
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from medidiff.data.mask_sources import MASK_SOURCE_KEY, TRAINING_DATA_KEY, MaskSource, training_data_record
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
        masks, mask_files = masks_from_manifest(args.masks, args.root, pipe.cfg, folds=args.mask_folds)
    elif args.mask_folds:
        raise MedidiffError("--mask-folds needs --masks MANIFEST.json (folds are a manifest's)")
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
    sampler = pipe.sampler_config  # a cascade's base sampler; the SR stage keeps its own
    if args.sampler:
        sampler = replace(sampler, name=args.sampler, eta=0.0 if args.sampler != "ddim" else sampler.eta)
    if args.steps:
        sampler = replace(sampler, num_steps=args.steps)
    if args.guidance is not None:
        sampler = replace(sampler, guidance_scale=args.guidance)
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
                source = mask_files[i % len(mask_files)]
                if isinstance(source, MaskSource):  # case id, fold, manifest hash: evaluate checks it
                    prov["mask"], prov[MASK_SOURCE_KEY] = f"{source.manifest}#{source.case_id}", source.record()
                else:
                    prov["mask"] = str(source)
            prov[TRAINING_DATA_KEY] = training_data_record(pipe.cfg.data)
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


def masks_from_manifest(path: str, root: str | None, cfg, folds: list[int] | None = None
                        ) -> tuple[torch.Tensor, list[MaskSource]]:
    """(N, 3, *grid) WT/TC/ET masks of the manifest's labelled cases in the folds the model trained on
    (or ``folds``; see :func:`medidiff.data.mask_sources.select_mask_cases`), through the model's
    data pipeline, and where each came from."""
    import dataclasses

    import numpy as np
    import torch

    from medidiff.data.brats import REGIONS
    from medidiff.data.manifest import label_map_of, read_manifest
    from medidiff.data.mask_sources import select_mask_cases
    from medidiff.data.masks import model_grid_labels

    items, sources = select_mask_cases(path, root, cfg.data, folds)
    data = dataclasses.replace(cfg.data, label_mode="regions", flip_prob=0.0)
    labels = model_grid_labels(items, data, label_map=label_map_of(read_manifest(path)))
    masks = torch.stack([torch.from_numpy(np.stack([np.isin(lab, v) for v in REGIONS.values()]).astype(np.float32))
                         for lab in labels])
    return masks, sources


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
