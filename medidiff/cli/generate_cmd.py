"""`medidiff generate`: synthetic cases as NIfTI with labels, previews and provenance."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medidiff.cli.common import add_dry_run, dry_run, options_of
from medidiff.data.checks import DEFAULT_MAX_VOXELS
from medidiff.errors import MedidiffError
from medidiff.pretrained import PRETRAINED, model_path

if TYPE_CHECKING:
    import torch

    from medidiff.layouts import Layout
    from medidiff.samplers.config import SamplerConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate synthetic cases from a trained model")
    p.add_argument("--model", required=True, type=model_path,
                   help="model folder (from `medidiff export` or RUN/model), or a shipped model by name: "
                        + ", ".join(PRETRAINED))
    p.add_argument("--sr-model", type=model_path,
                   help="super-resolution model folder: cascade the base model to the full grid")
    p.add_argument("--masks", help="label maps for mask-conditioned models: a folder of label NIfTIs on the "
                                   "model grid (case i uses file i mod n, sorted by name), or a manifest whose "
                                   "labelled cases go through the model's data pipeline")
    p.add_argument("--first-stage", type=model_path,
                   help="the two-stage recipe in one command: a model that draws label maps (generate_labels) "
                        "writes --num cases to OUT/first_stage (its own sampler; its images are kept there too), "
                        "and their seg.nii.gz condition --model, a mask-conditioned model (as --masks OUT/first_stage)")
    p.add_argument("--mask-folds", type=int, nargs="+", help="with a --masks manifest: take masks only from these "
                   "folds (default: the folds the model trained on; needs --masks to be the model's own manifest)")
    p.add_argument("--reference", help="a manifest: write cases in a real case's grid (its affine, spacing and "
                                       "shape; the inverse of the data pipeline) instead of --geometry")
    p.add_argument("--reference-case", help="case id in --reference (default: its first case)")
    p.add_argument("--root", help="data root of --masks/--reference manifests (default: the manifest's folder)")
    p.add_argument("--num", type=int, required=True, help="number of cases")
    p.add_argument("--out", required=True, help="output folder (--layout nnunet: the nnUNet_raw folder, which gets "
                                                "DatasetNNN_NAME/)")
    p.add_argument("--layout", default="medidiff",
                   help="how cases are written: medidiff (case_XXXX/{t1n,t1c,t2w,t2f,seg}.nii.gz, the default), brats "
                        "(BraTS-SYN-xxxxx-000/BraTS-SYN-xxxxx-000-{t1n,t1c,t2w,t2f,seg}.nii.gz), brats2021 "
                        "(BraTS2021_SYNxxxxx/BraTS2021_SYNxxxxx_{t1,t1ce,t2,flair,seg}.nii.gz, enhancing = 4) or "
                        "nnunet (DatasetNNN_NAME/imagesTr, labelsTr, dataset.json; needs --dataset-id/--dataset-name)")
    p.add_argument("--dataset-id", help="--layout nnunet: data set id, 1..999")
    p.add_argument("--dataset-name", help="--layout nnunet: data set name (letters, digits, _ - .)")
    p.add_argument("--prompts", help="text-conditioned models: a file with one prompt per line "
                                     "(one line for all cases, or exactly --num lines)")
    p.add_argument("--text-encoder", help="local text encoder folder (default: the path recorded with the model)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's sampler config; with "
                   "--sr-model, the base model's)")
    p.add_argument("--sr-steps", type=int, help="the SR stage's sampling steps (default: the SR model's config)")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "euler", "heun"])
    p.add_argument("--eta", type=float, help="ddim and euler: fresh noise a step, 0 (deterministic) to 1 (the "
                   "path's own posterior, as ancestral DDPM); default: the model's sampler config")
    p.add_argument("--tail-steps", type=int, help="euler and heun: extra steps between the grid's last non-zero time "
                   "and 0, each at a quarter of the one before, so the final estimate comes from a nearly clean input "
                   "(1 cleans the background of long-trained models: sampler.tail_steps); "
                   "default: the model's. Like --steps, for --model only (not --sr-model nor --first-stage)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="case i uses seed + i (regenerate any single case)")
    p.add_argument("--batch", type=int, default=1,
                   help="cases per forward batch (on a GPU at the model's grid, 8 generated 2.6x faster than 1 with "
                        "the shipped 2 mm model on an H100; more memory)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the denoisers (GPU): the first case pays the compilation, the "
                        "rest run faster (a 30+30-step cascade case on an H200: 2.46 -> 1.60 s)")
    p.add_argument("--geometry", choices=["native", "brats"],
                   help="native: the model grid; brats: 240x240x155, 1 mm, BraTS affine (default: brats for the "
                        "BraTS layouts, native otherwise)")
    p.add_argument("--label-convention", choices=["brats2021", "brats2023"],
                   help="label values of seg.nii.gz (and of --masks label maps): brats2021 writes enhancing "
                        "tumour as 4, brats2023 as 3 (default: the training data's, recorded at export)")
    p.add_argument("--keep-source-ids", action="store_true",
                   help="also record the real case ids and paths behind --masks/--reference, in the JSON sidecars "
                        "only (never in NIfTI headers); by default only their hashes, fold and manifest hash")
    p.add_argument("--overwrite", action="store_true",
                   help="replace cases in --out that a different request made (model, seed, sampler, steps, "
                        "geometry, masks...); without it such a folder is refused. Matching cases are kept")
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
    if args.mask_folds and not (args.masks and args.masks.endswith(".json")):
        raise MedidiffError("--mask-folds needs --masks MANIFEST.json (folds are a manifest's)")
    layout = layout_of(args)
    check_layout_target(layout, Path(args.out))
    if args.first_stage:
        _check_two_stages(args, layout)
    if args.geometry is None:  # BraTS tooling expects the BraTS grid
        args.geometry = "brats" if layout.name in ("brats", "brats2021") else "native"
    forced = layout.label_convention
    if forced and args.label_convention and args.label_convention != forced:
        raise MedidiffError(f"--label-convention {args.label_convention}: --layout {layout.name} writes {forced} labels"
                            + (" (nnU-Net needs consecutive labels 0-3)" if layout.name == "nnunet" else ""))
    _check_model_samplers(args)  # before any weights are read or any output is written; --dry-run too
    folder_sources = None  # a --masks folder's records, read once: label maps a model drew record their seeds
    if args.masks and not args.masks.endswith(".json") and Path(args.masks).is_dir():
        # shared starting noise refused before any weights are read, so --dry-run says it too (an unreadable
        # folder is load_masks' to report, later)
        folder_sources = folder_mask_sources(args.masks, keep_ids=args.keep_source_ids)
        check_noise_not_shared(args.masks, folder_sources, args.seed, args.num)
    options = options_of(args)
    if args.first_stage:  # what the first stage will run: its own seeds, sampler and folder
        options["first_stage_run"] = options_of(first_stage_args(args))
        options["masks"] = str(first_stage_folder(args))  # what the second stage will read
    if dry_run(args, options):
        return 0
    if args.first_stage:
        _generate(first_stage_args(args))
        args.masks = str(first_stage_folder(args))
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from medidiff.data.brats import LABEL_CONVENTIONS, to_convention
    from medidiff.data.transforms import output_spacing
    from medidiff.data.mask_sources import TRAINING_DATA_KEY, training_data_record
    from medidiff.files import folder_lock, write_text_atomic
    from medidiff.generation import DiffusionPipeline, place_in_grid, recorded_training_data
    from medidiff.io import source_record, write_nifti
    from medidiff.layouts import NnunetLayout, write_nnunet_dataset_json
    from medidiff.utils.threads import BatchWriter
    from medidiff.viz import preview_image, write_png

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MedidiffError(f"--device {args.device}: no CUDA device on this machine; use --device cpu")
    if args.sr_model:
        from medidiff.cascade.pipeline import CascadePipeline

        pipe = CascadePipeline.from_pretrained(args.model, args.sr_model, device=args.device,
                                               text_encoder=args.text_encoder)
    else:
        pipe = DiffusionPipeline.from_pretrained(args.model, device=args.device, text_encoder=args.text_encoder)
    if args.compile:
        pipe.compile()
    # what the model (the SR stage's in a cascade, whose data section pipe.cfg is) trained on, as
    # export recorded it; older model folders: the manifest file as it is now
    trained_on = recorded_training_data(args.sr_model or args.model) or training_data_record(pipe.cfg.data)
    recorded = json.loads((Path(args.model) / "config.json").read_text()).get("label_convention")
    first_stage = first_stage_convention(args.masks) if args.masks and not args.masks.endswith(".json") else None
    mask_convention = args.label_convention or first_stage or recorded or "brats2023"  # of --masks label maps
    convention = forced or mask_convention  # of the seg files written
    label_record = {"label_convention": convention,
                    "label_convention_from": ("--label-convention" if args.label_convention else
                                              f"--layout {layout.name}" if forced else
                                              "the first stage's labels (--masks)" if first_stage else
                                              "training data" if recorded else "default (training data unknown)"),
                    "labels": {str(k): v for k, v in LABEL_CONVENTIONS[convention].items()}}
    masks = None
    mask_sources: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (public, sidecar-only) per mask
    if args.masks and args.masks.endswith(".json"):
        masks, items = masks_from_manifest(args.masks, args.root, pipe.cfg, folds=args.mask_folds, trained_on=trained_on)
        # fold and manifest hash are what `evaluate` checks (no mask from its held-out fold)
        mask_sources = [source_record(it["case_id"], args.masks, fold=it.get("fold"), keep_ids=args.keep_source_ids)
                        for it in items]
    elif args.masks:
        masks, _ = load_masks(args.masks, tuple(pipe.image_shape[1:]), max_voxels=pipe.cfg.data.max_voxels,
                              convention=mask_convention)
        # (the first stage's folder exists only now: its records are read here)
        mask_sources = (folder_sources if folder_sources is not None else
                        folder_mask_sources(args.masks, keep_ids=args.keep_source_ids))
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
    modalities = list(pipe.cfg.data.modalities)
    layout.check_modalities(modalities)
    if layout.needs_labels and not (pipe.cfg.conditioning.generate_labels or pipe.cfg.conditioning.mask):
        raise MedidiffError(f"--layout {layout.name}: every case needs a label map, and this model generates none "
                            "(train with conditioning.generate_labels, or give --masks to a mask-conditioned model)")
    sampler = sampler_of(args, pipe.sampler_config)  # a cascade's base sampler; the SR stage keeps its own
    sr_kwargs: dict[str, SamplerConfig] = {}
    if args.sr_steps:
        sr_kwargs["sr_sampler"] = replace(pipe.sr.sampler_config, num_steps=args.sr_steps)
    out = Path(args.out)
    spacing = list(output_spacing(pipe.cfg.data))
    geometry_record: dict[str, Any] = {"geometry": args.geometry}
    private_record: dict[str, Any] = {}  # --keep-source-ids: sidecars only, never headers
    if args.reference:
        public, private = source_record(chosen[0]["case_id"], args.reference, fold=chosen[0].get("fold"),
                                        keep_ids=args.keep_source_ids)
        geometry_record = {"geometry": "reference", "reference": public}
        if private:
            private_record["reference"] = {**public, **private}

    def expected(i: int) -> dict[str, Any]:
        """Case i's provenance, known before generating it: what a finished case must match."""
        prov = {**pipe.provenance(args.seed + i, sampler, **sr_kwargs), "case": layout.case_id(i), **geometry_record}
        if prompts is not None:
            prov["prompt"] = prompts[i]
        if mask_sources:
            prov["mask"] = mask_sources[i % len(mask_sources)][0]
        if pipe.cfg.conditioning.generate_labels or pipe.cfg.conditioning.mask:
            prov.update(label_record)  # the legend of seg.nii.gz
        prov[TRAINING_DATA_KEY] = trained_on  # evaluate checks the held-out fold
        return prov

    root = layout.root(out)
    with folder_lock(root, "--out"):
        todo, conflicts = plan_cases(root, args.num, expected, layout, modalities)
        if conflicts and not args.overwrite:
            (case, why), more = conflicts[0], len(conflicts) - 1
            raise MedidiffError(f"--out {out}: {case} was generated differently ({why})"
                                + (f"; {more} more case(s) differ" if more else "")
                                + ": choose another --out, or pass --overwrite to replace them")
        for case, _ in conflicts:
            if (root / case).is_dir():  # a case folder, of this layout or another: marker first (Layout.remove)
                (root / case / "provenance.json").unlink(missing_ok=True)
                shutil.rmtree(root / case)
            else:
                layout.remove(root, case, modalities)
        skipped = args.num - len(todo)
        bar = tqdm(total=len(todo), desc="generate", unit="case", disable=args.no_progress)

        def write_case(i: int, gen: Any) -> None:
            files = layout.case_files(root, layout.case_id(i), gen.modalities)
            prov = expected(i)
            private = dict(private_record)
            if mask_sources and mask_sources[i % len(mask_sources)][1]:
                private["mask"] = {**prov["mask"], **mask_sources[i % len(mask_sources)][1]}
            shown = []
            for m, name in enumerate(gen.modalities):
                vol = (gen.images[m] + 1) / 2  # [0, 1], background 0 like skull-stripped BraTS
                vol, affine = place_in_grid(vol, spacing, geometry)
                write_nifti(files.images[name], vol, affine, provenance=prov, sidecar_only=private,
                            sidecar=layout.sidecars)
                shown.append(vol)
            label = gen.label
            if label is not None:
                label, affine = place_in_grid(to_convention(label, convention), spacing, geometry, label=True)
                write_nifti(files.label, label.astype("uint8"), affine, provenance=prov, is_label=True,
                            sidecar_only=private, sidecar=layout.sidecars)
            write_png(files.preview, preview_image(shown, label, modalities=gen.modalities,
                                                   labels=LABEL_CONVENTIONS[convention]))
            # Last, atomically and synced: its presence marks the case finished (plan_cases).
            write_text_atomic(files.provenance, json.dumps({**prov, **private}, indent=2), fsync=True)

        with BatchWriter(write_case, on_done=lambda: bar.update(1)) as writer:
            for start in range(0, len(todo), args.batch):
                idx = todo[start:start + args.batch]
                batch_masks = None
                if masks is not None:
                    batch_masks = torch.stack([masks[i % len(masks)] for i in idx])
                # sampled while earlier cases are still being written (BatchWriter: up to a case a thread)
                cases = pipe([args.seed + i for i in idx], sampler=sampler, masks=batch_masks, **sr_kwargs,
                             prompts=None if prompts is None else [prompts[i] for i in idx])
                writer.submit(list(zip(idx, cases)))
        bar.close()
        if isinstance(layout, NnunetLayout):  # counts every finished case in the folder (one run)
            write_nnunet_dataset_json(root, modalities, description=f"synthetic cases from medidiff generate "
                                      f"(experiment {pipe.cfg.name})", medidiff={"name": layout.folder_name,
                                                                                 "synthetic_ids": "SYN_*"})
    print(f"{len(todo)} case(s) written to {root}" + (f", {skipped} already there (skipped)" if skipped else "")
          + (f", {len(conflicts)} replaced (--overwrite)" if conflicts else ""))
    return 0


FIRST_STAGE_FOLDER = "first_stage"  # not case_*: evaluate and plan_cases read only case folders
# The first stage's seeds: case i's label map is drawn with seed + FIRST_STAGE_SEED_OFFSET + i, its images with
# seed + i. Equal seeds would start the second stage from the noise that drew its own label map (every model's
# starting noise comes from one CPU stream per seed, so two models' first channels are the same numbers).
FIRST_STAGE_SEED_OFFSET = 1_000_000


def first_stage_folder(args: argparse.Namespace) -> Path:
    """OUT/first_stage, in the layout's own root (an nnU-Net run's data set folder, not the shared nnUNet_raw)."""
    return layout_of(args).root(Path(args.out)) / FIRST_STAGE_FOLDER


def _check_two_stages(args: argparse.Namespace, layout: Layout) -> None:
    """--first-stage: refused before anything is written unless the first model draws label maps, --model is
    mask-conditioned, both generate on one grid and the layout takes --model's modalities (config.json only)."""
    from medidiff.data.transforms import output_shape, output_spacing
    from medidiff.generation import KIND, read_model_config

    if args.masks:
        raise MedidiffError("--first-stage draws the masks: give it or --masks, not both")
    for flag in ("mask_folds", "reference", "prompts", "sr_model"):
        if getattr(args, flag):
            raise MedidiffError(f"--{flag.replace('_', '-')} is not supported with --first-stage")
    cfgs = {}
    for flag, model, key, need in (("--first-stage", args.first_stage, "generate_labels", "draws no label maps"),
                                   ("--model", args.model, "mask", "is not mask-conditioned")):
        cfgs[flag], _ = read_model_config(model, KIND)
        if not getattr(cfgs[flag].conditioning, key):
            raise MedidiffError(f"{flag} {model}: {need} (conditioning.{key} is false): the two-stage recipe needs "
                                "a first stage that draws labels and a second conditioned on them")

    def grid(cfg) -> tuple[tuple[int, ...], tuple[float, ...]]:  # (shape, mm) of what the model writes
        return output_shape(cfg.data), output_spacing(cfg.data)

    if grid(cfgs["--first-stage"]) != grid(cfgs["--model"]):
        raise MedidiffError(f"--first-stage {args.first_stage} generates on {grid(cfgs['--first-stage'])} (shape, mm) "
                            f"and --model {args.model} on {grid(cfgs['--model'])}: the label maps must be on its grid")
    layout.check_modalities(list(cfgs["--model"].data.modalities))


def first_stage_args(args: argparse.Namespace) -> argparse.Namespace:
    """The first stage's request: the first model on its own sampler config, its own seeds
    (FIRST_STAGE_SEED_OFFSET), the same batch, device, label convention and folder rules, into OUT/first_stage
    on the model grid (what --masks reads)."""
    first = argparse.Namespace(**vars(args))
    first.model, first.first_stage, first.out = args.first_stage, None, str(first_stage_folder(args))
    first.layout, first.geometry, first.seed = "medidiff", "native", args.seed + FIRST_STAGE_SEED_OFFSET
    for flag in ("steps", "sr_steps", "sampler", "eta", "tail_steps", "guidance", "masks", "dataset_id",
                 "dataset_name"):
        setattr(first, flag, None)
    return first


def check_noise_not_shared(masks_from: str, mask_sources: Sequence[tuple[dict[str, Any], dict[str, Any]]],
                           seed: int, num: int) -> None:
    """Refuse a run that would draw any case from a seed that drew one of its label maps (a --masks folder a model
    generated records each label map's seed, passed on through later stages): the first noise channels of any two
    models are the same numbers for a seed, so the images would not be drawn independently of the masks."""
    drawn = {m["seed"]: m.get("generated_case") or m.get("via_generated_case")
             for m, _ in mask_sources if m.get("seed") is not None}
    shared = sorted(set(drawn) & set(range(seed, seed + num)))
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise MedidiffError(f"--masks {masks_from}: seed {shared[0]} drew its label map {drawn[shared[0]]}, and this "
                            f"run would draw case {shared[0] - seed} from it{more}: the images would start from the "
                            f"noise that drew their masks; pass --seed {max(drawn) + 1} (seeds the first stage did not "
                            "use)")


def layout_of(args: argparse.Namespace) -> Layout:
    """The --layout (with --dataset-id/--dataset-name), refused in one line when malformed."""
    from medidiff.layouts import make_layout

    dataset_id = None
    if args.dataset_id is not None:
        try:
            dataset_id = int(args.dataset_id)
        except ValueError:
            raise MedidiffError(f"--dataset-id {args.dataset_id!r}: nnU-Net data set ids are integers 1..999") from None
    return make_layout(args.layout, dataset_id=dataset_id, dataset_name=args.dataset_name)


def check_layout_target(layout: Layout, out: Path) -> None:
    """Refuse an nnU-Net data set id that another name has, and a set that export-dataset made
    (its real cases are no generated run's: resuming into it would miscount numTraining)."""
    from medidiff.layouts import EXPORT_RECORD, NnunetLayout, check_dataset_id_free

    if isinstance(layout, NnunetLayout):
        check_dataset_id_free(out, layout)
        root = layout.root(out)
        if (root / "medidiff" / EXPORT_RECORD).is_file():
            raise MedidiffError(f"{root}: written by `medidiff export-dataset` (real and synthetic cases): generate into "
                                "another --dataset-id/--dataset-name, or export again")


def sampler_of(args: argparse.Namespace, sampler: SamplerConfig) -> SamplerConfig:
    """The model's sampler with --sampler/--eta/--steps/--guidance/--tail-steps applied."""
    from dataclasses import replace

    from medidiff.config import ConfigError
    from medidiff.samplers.config import TAKES_ETA

    try:
        if args.sampler:
            sampler = replace(sampler, name=args.sampler, eta=sampler.eta if args.sampler in TAKES_ETA else 0.0)
        if args.eta is not None:
            sampler = replace(sampler, eta=args.eta)
        if args.steps:
            sampler = replace(sampler, num_steps=args.steps)
        if args.guidance is not None:
            sampler = replace(sampler, guidance_scale=args.guidance)
        if args.tail_steps is not None:
            sampler = replace(sampler, tail_steps=args.tail_steps)
    except ValueError as exc:  # SamplerConfig's own checks (e.g. a DDPM spacing with --sampler euler)
        raise ConfigError(f"--sampler/--eta/--steps/--guidance/--tail-steps: {exc}") from None
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


# Keys that differ from case to case; every other provenance key is the same for a whole run.
_PER_CASE_KEYS = frozenset({"case", "seed", "sr_seed", "prompt", "mask"})


def _first_difference(have: dict[str, Any], want: dict[str, Any], keys: Iterable[str]) -> str | None:
    from medidiff.samplers.config import RECORDED_WHEN_SET

    # sampler options recorded only where set: a stored one this request leaves at 0 is a difference too
    for key in (p + k for p in ("", "sr_") for k in RECORDED_WHEN_SET):
        if have.get(key) and key not in want:
            return f"{key} {have[key]!r}; this run: 0 (the default)"
    for key in keys:
        if key not in have:
            return f"its provenance has no {key!r}; this run: {want[key]!r}"
        stored = have[key]
        if isinstance(want[key], dict) and isinstance(stored, dict):
            # source records: --keep-source-ids adds plain ids beside the hashes; compare the hashes
            stored = {k: stored.get(k) for k in want[key]}
        if stored != want[key]:
            return f"{key} {have[key]!r}; this run: {want[key]!r}"
    return None


def plan_cases(root: Path, num: int, expected: Callable[[int], dict[str, Any]], layout: Layout | None = None,
               modalities: Sequence[str] = ()) -> tuple[list[int], list[tuple[str, str]]]:
    """Which of cases 0..num-1 to generate, and which existing cases conflict with this request.

    A case counts as finished only when its provenance file (written last) exists; a finished
    case is skipped when its provenance equals this request's (model and config hashes, seed,
    sampler, steps, guidance, geometry, mask, prompt...), and conflicts otherwise. Finished cases
    beyond ``num`` conflict when their run-level keys differ, and so do finished cases of another
    layout in ``root`` (one folder holds one run). A case started but without provenance is an
    interrupted write (the caller holds the folder's lock: no one is writing it now): its files
    are removed, and it is redone when it is one of 0..num-1.
    ``layout`` (default medidiff's) says where a case's files are (:mod:`medidiff.layouts`).
    Returns (indices to generate, [(case name, first difference)]).
    """
    from medidiff.layouts import LAYOUTS, CaseFolderLayout, make_layout

    layout = layout or make_layout("medidiff")
    todo: list[int] = []
    conflicts: list[tuple[str, str]] = []
    run_keys = [k for k in expected(0) if k not in _PER_CASE_KEYS]
    finished = layout.finished(root)
    for name, prov_file in finished.items():
        i = layout.index_of(name)
        try:
            have = json.loads(prov_file.read_text())
            if not isinstance(have, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            conflicts.append((name, f"its {prov_file.name} is unreadable: {exc}"))
            continue
        want = expected(i) if i is not None and i < num else expected(0)
        keys = list(want) if i is not None and i < num else run_keys
        why = _first_difference(have, want, keys)
        if why is not None:
            conflicts.append((name, why))
    for other in LAYOUTS:
        if other in (layout.name, "nnunet"):
            continue
        other_layout = make_layout(other)
        if isinstance(other_layout, CaseFolderLayout):
            conflicts += [(name, f"written in the {other} layout; this run: --layout {layout.name}")
                          for name in other_layout.finished(root)]
    clashing = {name for name, _ in conflicts}
    for name in layout.started(root):
        if name not in finished:  # interrupted earlier
            layout.remove(root, name, modalities)
    for i in range(num):
        name = layout.case_id(i)
        if name in clashing or name not in finished:
            todo.append(i)
    return todo, conflicts


def name_hash(path: Path) -> str:
    """sha256 (16 hex digits) of a label map's file name without .nii/.nii.gz: the hashed case id
    when the file is named after its case, as :func:`medidiff.data.masks.write_model_grid_masks` does."""
    import hashlib
    import re

    return hashlib.sha256(re.sub(r"\.nii(\.gz)?$", "", path.name).encode()).hexdigest()[:16]


def masks_from_manifest(path: str, root: str | None, cfg, folds: list[int] | None = None, *,
                        trained_on: dict[str, Any] | None = None) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """(N, 3, *grid) WT/TC/ET masks of the manifest's labelled cases in the folds the model trained on
    (or ``folds``; see :func:`medidiff.data.mask_sources.select_mask_cases`), through the model's
    data pipeline, and the manifest items they came from."""
    import dataclasses

    import numpy as np
    import torch

    from medidiff.data.brats import REGIONS
    from medidiff.data.manifest import label_map_of, read_manifest
    from medidiff.data.mask_sources import select_mask_cases
    from medidiff.data.masks import model_grid_labels

    items = select_mask_cases(path, root, cfg.data, folds, trained_on=trained_on)
    data = dataclasses.replace(cfg.data, label_mode="regions", flip_prob=0.0)
    labels = model_grid_labels(items, data, label_map=label_map_of(read_manifest(path)))
    masks = torch.stack([torch.from_numpy(np.stack([np.isin(lab, v) for v in REGIONS.values()]).astype(np.float32))
                         for lab in labels])
    return masks, items


# the public keys of a conditioning mask's record (medidiff.io.source_record, a label-map file): what an inherited
# record may carry into headers; a first stage's provenance.json also holds its sidecar-only ids
PUBLIC_MASK_KEYS = ("case_id_sha256", "manifest_sha256", "fold", "file_sha256", "file_stem_sha256",
                    # a label map a model drew: that model (evaluate's fold check reads it) and the seed that drew it
                    "generated_case", "model_hash", "seed", "training_data")


def mask_files(folder: str | Path) -> list[Path]:
    """The label maps of a --masks folder, sorted: its .nii/.nii.gz files or, when it has none, the seg.nii.gz
    of each case_* folder in it: a folder `medidiff generate` wrote (the two-stage recipe: a model that
    generates labels, then a mask-conditioned one drawing the images for them). There every case must be
    finished (its provenance.json written after its volumes): an unfinished one is refused, since its label
    map's origin cannot be checked."""
    top = sorted(Path(folder).glob("*.nii*"))
    if top:
        return top
    # case order (case_10000 after case_9999), the order generate wrote them in
    segs = sorted(Path(folder).glob("case_*/seg.nii*"), key=lambda p: (len(p.parent.name), p.parent.name))
    for seg in segs:
        if not (seg.parent / "provenance.json").is_file():
            raise MedidiffError(f"{seg}: a case without provenance.json (unfinished?): finish that generate run "
                                "(rerun it with the same --out) or remove the case")
    return segs


def first_stage_convention(folder: str | Path) -> str | None:
    """The label convention a `medidiff generate` folder's seg files are in (its cases' provenance records it),
    so a second stage reads them without --label-convention; None for a folder of label-map files."""
    segs = mask_files(folder) if Path(folder).is_dir() else []
    found = set()
    for seg in segs:
        if seg.name.startswith("seg.") and (seg.parent / "provenance.json").is_file():
            try:
                conv = json.loads((seg.parent / "provenance.json").read_text()).get("label_convention")
            except (OSError, ValueError, AttributeError):
                continue  # generated_mask_source names the unreadable file
            if conv:
                found.add(str(conv))
    if len(found) > 1:
        raise MedidiffError(f"--masks {folder}: its cases' labels are in several conventions ({sorted(found)}): "
                            "generate them again with one --label-convention")
    return found.pop() if found else None


def folder_mask_sources(folder: str, *, keep_ids: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(public, sidecar-only) records of a --masks folder's label maps, in :func:`load_masks`' order. A mask
    file's name is often its source case id (write_model_grid_masks): the public record holds its content hash
    and its name's hash, which `evaluate` matches against its manifest; a label map another model generated
    records that model and seed instead (:func:`generated_mask_source`; its name is no patient's)."""
    from medidiff.generation import file_hash

    return [(generated_mask_source(f) or {"file_sha256": file_hash(f), "file_stem_sha256": name_hash(f)},
             {"file": str(f)} if keep_ids else {}) for f in mask_files(folder)]


def generated_mask_source(f: Path) -> dict[str, Any] | None:
    """The public provenance of a label map that `medidiff generate` wrote (its case folder's provenance.json
    names a generator): the file's hash, the case, and the generating model's hash and training data, so that
    evaluate applies its held-out-fold rule to that model too; or, when that case was itself drawn for a
    conditioning mask (its label map IS that mask), the mask's own record, so a held-out case's labels cannot
    pass through a second stage unnamed. None for any other label map."""
    from medidiff.data.mask_sources import TRAINING_DATA_KEY
    from medidiff.generation import file_hash

    prov_file = f.parent / "provenance.json"
    if not f.name.startswith("seg."):
        return None
    try:
        prov = json.loads(prov_file.read_text())
    except (OSError, ValueError) as e:
        raise MedidiffError(f"{prov_file}: unreadable provenance of a generated label map ({e})") from e
    if not isinstance(prov, dict) or "generator" not in prov:
        raise MedidiffError(f"{prov_file}: names no generator: not a case `medidiff generate` wrote, so its label "
                            "map's origin cannot be checked; give such label maps as files in a folder instead")
    inherited = prov.get("mask")
    if inherited:  # that case's label map was its own conditioning mask: its source is what the label map is
        if not isinstance(inherited, dict):
            raise MedidiffError(f"{prov_file}: its conditioning mask is recorded in an old form ({inherited!r}), "
                                "which the held-out-fold check cannot carry over; regenerate that folder")
        # public keys only: a first stage run with --keep-source-ids holds the plain case id there
        return {**{k: inherited[k] for k in PUBLIC_MASK_KEYS if k in inherited}, "via_generated_case": f.parent.name}
    return {"file_sha256": file_hash(f), "generated_case": f.parent.name, "model_hash": prov.get("model_hash"),
            "seed": prov.get("seed"), TRAINING_DATA_KEY: prov.get(TRAINING_DATA_KEY)}


def load_masks(folder: str, shape: tuple[int, ...], *, max_voxels: int = DEFAULT_MAX_VOXELS,
               convention: str = "brats2023") -> tuple[torch.Tensor, list[Path]]:
    """(N, 3, *shape) WT/TC/ET masks from label maps on the model's output grid, and the files they
    came from (sorted by name). Labels are in ``convention``'s values (what generate writes)."""
    import nibabel as nib
    import numpy as np
    import torch

    from medidiff.data.brats import BRATS2021_LABEL_MAP, LABEL_VALUES, REGIONS
    from medidiff.data.checks import confined_path, label_problem, label_values, read_volume
    from medidiff.errors import DataError

    files = mask_files(folder)
    if not files:
        raise MedidiffError(f"--masks {folder}: no .nii/.nii.gz label maps found (nor case_*/seg.nii.gz of a "
                            "`medidiff generate` folder)")
    out = []
    for f in files:
        data, affine = read_volume(confined_path(f, folder), max_voxels=max_voxels)
        ornt = nib.orientations.io_orientation(affine)  # to RAS, like nib.as_closest_canonical
        label = nib.orientations.apply_orientation(np.asarray(data), ornt)
        if label.shape != shape:
            raise DataError(f, f"label map has shape {label.shape}; the model generates {shape} (RAS): "
                               "resample it to the model grid first")
        label_map = BRATS2021_LABEL_MAP if convention == "brats2021" else {}
        problem = label_problem(label_values(label, f), label_map, LABEL_VALUES,
                                fix_2021="pass --label-convention brats2021")
        if problem:
            raise DataError(f, problem)
        for src, dst in label_map.items():
            label = np.where(label == src, dst, label)
        out.append(torch.from_numpy(np.stack([np.isin(label, v) for v in REGIONS.values()]).astype(np.float32)))
    return torch.stack(out), files
