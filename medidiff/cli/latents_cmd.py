"""`medidiff latents stats` (fit a codec's per-channel latent statistics) and `medidiff latents encode`
(write a latent cache of a manifest)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from medidiff.cli.common import add_config_args, dry_run, options_of, resolve_config
from medidiff.errors import MedidiffError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latents", help="latent codecs: fit statistics, encode a manifest into a latent cache")
    lsub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    lsub.required = True

    s = lsub.add_parser("stats", help="fit per-channel (per-sub-band) latent mean/std and store them in the codec",
                        description="Encodes the training split of the experiment's data (deterministic "
                                    "transforms; the held-out data.fold is left out) and writes the statistics "
                                    "into the codec's config.json (in place, or into --out). Any latent cache of "
                                    "the old codec becomes stale.")
    s.add_argument("--codec", required=True, help="codec folder (config.json [+ model.safetensors])")
    s.add_argument("--out", help="write the updated codec here instead of in place")
    s.add_argument("--max-batches", type=int, help="at most this many batches of train.micro_batch cases")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    add_config_args(s)
    s.set_defaults(func=_stats)

    e = lsub.add_parser("encode", help="encode every case of a manifest into a latent cache (safetensors shards)")
    e.add_argument("--codec", required=True, help="codec folder")
    e.add_argument("--manifest", required=True, help="manifest JSON (overrides data.manifest)")
    e.add_argument("--root", help="data root the manifest paths are relative to (overrides data.root)")
    e.add_argument("--out", required=True, help="cache folder: cache.json + shard_XXXXX.safetensors")
    e.add_argument("--mode", choices=["mean", "sample"], default="mean",
                   help="posterior mean (default; no noise floor) or one seeded sample per case")
    e.add_argument("--shard-size", type=int, default=64, help="cases per shard file")
    e.add_argument("--seed", type=int, default=0, help="(sample mode) case i draws from seed and i")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    add_config_args(e, required=False)
    e.set_defaults(func=_encode)


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MedidiffError(f"--device {device}: no CUDA device on this machine; use --device cpu")


def _loader(cfg: Any, codec: Any, items: list[dict[str, Any]], label_map: Any, batch_size: int):
    from torch.utils.data import DataLoader

    from medidiff.data.dataset import collate_cases, make_dataset

    data = dataclasses.replace(cfg.data, cache="none")  # one pass: nothing to cache
    ds = make_dataset(items, data, divisor=max(codec.downsampling_factor), train=False, label_map=label_map,
                      with_label=cfg.data.label_mode != "none")
    return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_cases)


def _codec_input(batch: dict[str, Any], cfg: Any, codec: Any) -> dict[str, Any]:
    """The batch with "image" as the codec sees it (modalities, + region masks if generated)."""
    from medidiff.training.diffusion import model_input

    x = model_input(batch, cfg)[0]
    if x.shape[1] != codec.in_channels:
        raise MedidiffError(f"the codec takes {codec.in_channels} channels ({codec.config.modalities}) but the "
                            f"data gives {x.shape[1]} (data.modalities {cfg.data.modalities}, "
                            f"conditioning.generate_labels {cfg.conditioning.generate_labels}, generate_brain "
                            f"{cfg.conditioning.generate_brain})")
    return {**batch, "image": x}


def _stats(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if dry_run(args, {**options_of(args), "data": dataclasses.asdict(cfg.data)}):
        return 0
    _check_device(args.device)
    from medidiff.data.manifest import label_map_of, load_manifest, read_manifest, split_folds
    from medidiff.latents import load_codec

    if not cfg.data.manifest:
        raise MedidiffError("data.manifest is empty: set it in the config or with --set data.manifest=...")
    codec = load_codec(args.codec).to(args.device)
    items = load_manifest(cfg.data.manifest, cfg.data.root or None)
    if cfg.data.fold is not None:
        items, _ = split_folds(items, cfg.data.fold)
    loader = _loader(cfg, codec, items, label_map_of(read_manifest(cfg.data.manifest)), cfg.train.micro_batch)
    codec.fit_stats((_codec_input(b, cfg, codec)["image"].to(args.device) for b in loader),
                    max_batches=args.max_batches)
    out = codec.to("cpu").save_pretrained(args.out or args.codec)
    c = codec.config
    print(f"fitted {c.type} codec statistics over {c.stats_count} latent voxels per channel -> {Path(out) / 'config.json'}")
    print("  mean " + " ".join(f"{m:.4g}" for m in (c.mean or [])[:16]) + (" ..." if len(c.mean or []) > 16 else ""))
    print("  std  " + " ".join(f"{s:.4g}" for s in (c.std or [])[:16]) + (" ..." if len(c.std or []) > 16 else ""))
    return 0


def _encode(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.shard_size < 1:
        raise MedidiffError("--shard-size must be >= 1")
    root = args.root if args.root is not None else (cfg.data.root if args.config else "")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=args.manifest, root=root))
    if dry_run(args, {**options_of(args), "data": dataclasses.asdict(cfg.data)}):
        return 0
    _check_device(args.device)
    from tqdm.auto import tqdm

    from medidiff.data.manifest import label_map_of, load_manifest, read_manifest
    from medidiff.latents import load_codec
    from medidiff.latents.cache import cache_pipeline_hash, write_latent_cache

    codec = load_codec(args.codec).eval()
    if args.mode == "sample" and not hasattr(codec, "posterior"):
        raise MedidiffError(f"--mode sample needs a VAE codec; {args.codec} is a {codec.config.type} codec (exact)")
    label_map = label_map_of(read_manifest(args.manifest))
    items = load_manifest(args.manifest, root or None)
    loader = _loader(cfg, codec, items, label_map, 1)
    ph = cache_pipeline_hash(cfg.data, codec)
    batches = (_codec_input(b, cfg, codec) for b in tqdm(loader, desc="encode", unit="case"))
    out = write_latent_cache(codec, args.codec, batches, args.out, pipeline_hash=ph, mode=args.mode,
                             shard_size=args.shard_size, seed=args.seed, device=args.device,
                             extra={"data": dataclasses.asdict(cfg.data), "manifest": str(args.manifest)})
    print(f"encoded {len(items)} cases ({args.mode}) into {out} (pipeline {ph})")
    return 0
