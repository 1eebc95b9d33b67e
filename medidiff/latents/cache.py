"""Latent cache: every case of a manifest encoded once by a codec, stored as safetensors shards.

Layout of a cache folder::

    cache.json                 format, codec_hash, pipeline_hash, mode, shapes, per-case index
    shard_00000.safetensors    "<case_id>": latent (C', D', H', W') float32, and
                               "<case_id>/label": label channels (if the pipeline had labels)

A cache is valid only for the exact codec (``codec_hash``: sha256 of the codec folder's
config.json and model.safetensors, so refitting the statistics invalidates it) and the exact
deterministic data pipeline (``pipeline_hash`` of :func:`medidiff.data.dataset.pipeline_hash`).
:class:`LatentCacheDataset` refuses a stale cache and names both hashes. Latents are stored as
the codec's *normalised* encode output; ``mode`` says whether that was the posterior mean or a
sample (FIELD-NOTES: storing mu + sigma * eps adds a noise floor to the diffusion loss).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from medidiff.errors import MedidiffError
from medidiff.files import atomic_path, staged_dir
from medidiff.latents.codec import CONFIG_NAME, WEIGHTS_NAME

__all__ = ["CACHE_NAME", "codec_hash", "cache_pipeline_hash", "write_latent_cache", "read_cache_manifest", "LatentCacheDataset"]

CACHE_NAME = "cache.json"
FORMAT = 1


def codec_hash(codec_dir: str | Path) -> str:
    """16 hex digits of sha256 over the codec folder's config.json (+ model.safetensors if any)."""
    codec_dir = Path(codec_dir)
    h = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = codec_dir / name
        if not path.is_file():
            if name == CONFIG_NAME:
                raise MedidiffError(f"{path}: not found; --codec must be a codec folder (config.json)")
            continue
        h.update(name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def cache_pipeline_hash(data: Any, codec: Any) -> str:
    """The pipeline hash a latent cache of ``data`` (a DataConfig whose ``manifest`` is set) encoded by
    ``codec`` records: the deterministic transforms with the codec's factor as divisor, the
    manifest's label map, labels kept unless ``label_mode`` is none. Pass it to
    :class:`LatentCacheDataset` to refuse caches built with another data section."""
    from medidiff.data.dataset import pipeline_hash
    from medidiff.data.manifest import label_map_of, read_manifest

    return pipeline_hash(data, divisor=max(codec.downsampling_factor), label_map=label_map_of(read_manifest(data.manifest)),
                         with_label=data.label_mode != "none")


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


@torch.no_grad()
def write_latent_cache(
    codec: Any,
    codec_dir: str | Path,
    batches: Iterable[dict[str, Any]],
    out_dir: str | Path,
    *,
    pipeline_hash: str,
    mode: Literal["mean", "sample"] = "mean",
    shard_size: int = 64,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Encode every batch ({"image", "case_id", optional "label", "fold"}) and write the cache.

    ``mode='sample'`` draws each case's noise from a generator seeded by (seed, case index),
    so a cache is reproducible. ``out_dir`` is replaced only when every case is encoded
    (:func:`medidiff.files.staged_dir`). Returns ``out_dir``.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    # Built beside out_dir and swapped in whole at the end: a run that fails half-way (a bad
    # file, a kill) keeps the previous cache, and no shard of an older cache can survive a rewrite.
    with staged_dir(out_dir) as stage:
        cases: list[dict[str, Any]] = []
        shard: dict[str, torch.Tensor] = {}
        n_shards = 0
        seen: set[str] = set()

        def flush() -> None:
            nonlocal shard, n_shards
            if shard:
                with atomic_path(stage / _shard_name(n_shards)) as tmp:  # the umask's mode, not 0600
                    save_file(shard, str(tmp))
                n_shards += 1
                shard = {}

        codec = codec.to(device)
        for batch in batches:
            x = batch["image"].to(device).float()  # (B, C, D, H, W)
            for b in range(x.shape[0]):
                case_id = str(batch["case_id"][b])
                if case_id in seen:
                    raise MedidiffError(f"case id {case_id!r} appears twice in the manifest: cache keys must be unique")
                seen.add(case_id)
                if mode == "sample":
                    gen = torch.Generator(device=x.device).manual_seed(seed * 1_000_003 + len(cases))
                    z = codec.encode(x[b:b + 1], mode="sample", generator=gen)
                elif hasattr(codec, "posterior"):
                    z = codec.encode(x[b:b + 1], mode="mean")
                else:
                    z = codec.encode(x[b:b + 1])  # exact codecs (wavelet) have no posterior
                entry: dict[str, Any] = {"case_id": case_id, "shard": _shard_name(n_shards),
                                         "shape": list(z.shape[1:]), "image_shape": list(x.shape[1:])}
                shard[case_id] = z[0].float().cpu().contiguous()
                if "label" in batch:
                    shard[f"{case_id}/label"] = torch.as_tensor(batch["label"][b]).cpu().contiguous()
                    entry["label_shape"] = list(shard[f"{case_id}/label"].shape)
                if "fold" in batch:
                    entry["fold"] = int(batch["fold"][b])
                cases.append(entry)
                if len(shard) and sum(1 for k in shard if "/" not in k) >= shard_size:
                    flush()
        flush()
        if not cases:
            raise MedidiffError("no cases to encode: the manifest selection is empty")
        manifest = {
            "format": FORMAT,
            "codec_hash": codec_hash(codec_dir),
            "codec_dir": str(Path(codec_dir).resolve()),
            "codec_type": getattr(codec.config, "type", ""),
            "pipeline_hash": pipeline_hash,
            "mode": mode,
            "seed": seed,
            "latent_channels": int(codec.latent_channels),
            "shard_size": shard_size,
            "num_cases": len(cases),
            "cases": cases,
            **(extra or {}),
        }
        (stage / CACHE_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def read_cache_manifest(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / CACHE_NAME
    if not path.is_file():
        raise MedidiffError(f"{path}: not found; build the cache with `medidiff latents encode`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MedidiffError(f"{path}: not valid JSON ({exc}); rebuild the cache") from exc
    if data.get("format") != FORMAT:
        raise MedidiffError(f"{path}: cache format {data.get('format')} is not {FORMAT}; rebuild the cache")
    return data


class LatentCacheDataset(Dataset):
    """Map-style dataset over a latent cache; refuses a cache that does not match its codec/pipeline.

    Items: ``{"latent": (C', D', H', W') float32, "case_id": str, "label": ... (if cached),
    "fold": int (if known)}``. ``pipeline_hash``: the hash of the data pipeline the caller
    expects (``medidiff.data.dataset.pipeline_hash(cfg.data, ...)``); None skips that check.
    ``folds`` keeps only those folds. Shards are loaded lazily and kept in memory.
    """

    random_items = False  # the same items every epoch: train.data_on_device may hold them on the device

    def __init__(self, cache_dir: str | Path, codec_dir: str | Path, *, pipeline_hash: str | None = None,
                 folds: Iterable[int] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.manifest = read_cache_manifest(self.cache_dir)
        current = codec_hash(codec_dir)
        cached = self.manifest.get("codec_hash")
        if cached != current:
            raise MedidiffError(
                f"{self.cache_dir / CACHE_NAME}: stale latent cache: it was encoded by codec hash {cached} but "
                f"{codec_dir} now has hash {current} (weights or statistics changed); re-run "
                f"`medidiff latents encode --codec {codec_dir} ... --out {self.cache_dir}`"
            )
        if pipeline_hash is not None and self.manifest.get("pipeline_hash") != pipeline_hash:
            raise MedidiffError(
                f"{self.cache_dir / CACHE_NAME}: stale latent cache: it was built with data pipeline hash "
                f"{self.manifest.get('pipeline_hash')} but this experiment's pipeline hash is {pipeline_hash} "
                f"(data section changed: roi, spacing, percentiles, modalities...); re-run `medidiff latents encode`"
            )
        keep = set(folds) if folds is not None else None
        self.cases = [c for c in self.manifest["cases"] if keep is None or c.get("fold") in keep]
        self._shards: dict[str, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.cases)

    def _shard(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._shards:
            from safetensors.torch import load_file

            path = self.cache_dir / name
            if not path.is_file():
                raise MedidiffError(f"{path}: shard missing from the cache; rebuild it with `medidiff latents encode`")
            self._shards[name] = load_file(str(path))
        return self._shards[name]

    def __getitem__(self, index: int) -> dict[str, Any]:
        case = self.cases[index]
        shard = self._shard(case["shard"])
        item: dict[str, Any] = {"latent": shard[case["case_id"]], "case_id": case["case_id"]}
        if f"{case['case_id']}/label" in shard:
            item["label"] = shard[f"{case['case_id']}/label"]
        if "fold" in case:
            item["fold"] = case["fold"]
        return item
