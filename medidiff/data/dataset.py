"""Datasets (uncached, in-memory or on-disk cache) and seeded loaders over manifest items.

The transforms of :mod:`medidiff.data.transforms` put every deterministic step first, so MONAI's
``CacheDataset`` / ``PersistentDataset`` store the output of the last deterministic transform
and only the random flip runs per epoch. With ``cache: disk`` the second epoch (and the next run
with the same pipeline) reads ``.pt`` files and never decodes gzip again.

Disk caches are keyed twice so they cannot go stale silently:

* the folder ``<cache_dir>/pipeline-<hash>`` hashes everything that changes the deterministic
  output (spacing, roi, percentiles, crop, downsample, label mode, modalities, divisor, label
  map, PIPELINE_VERSION, MONAI version);
* each file name hashes the item *and* its source files' size and modification time, so
  regenerating a data set in place invalidates its entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import monai
import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset

from medidiff.data.config import DataConfig
from medidiff.data.manifest import label_map_of, load_manifest, read_manifest, split_folds
from medidiff.data.transforms import PIPELINE_VERSION, build_transforms, medidiff_error_of, parse_label_map
from medidiff.errors import MedidiffError
from medidiff.utils.threads import case_map, usable_cores

__all__ = ["make_dataset", "manifest_datasets", "make_loader", "collate_cases", "pipeline_hash"]

log = logging.getLogger(__name__)

_PATH_KEYS = ("image", "label")
# per-item voxel positions some pipelines add (the SR stage's windows: medidiff.cascade.windows)
_INDEX_KEYS = ("patch_origin", "window_origin")


def pipeline_hash(
    cfg: DataConfig, *, divisor: int = 1, label_map: Mapping[Any, Any] | None = None, with_label: bool = True
) -> str:
    """16 hex digits identifying the deterministic pipeline (names the disk-cache folder)."""
    facts = {
        "version": PIPELINE_VERSION,
        "monai": monai.__version__,
        "modalities": list(cfg.modalities),
        "spacing": list(cfg.spacing),
        "roi": list(cfg.roi),
        "percentiles": list(cfg.percentiles),
        "crop_foreground": cfg.crop_foreground,
        "downsample": cfg.downsample,
        "label_mode": cfg.label_mode if with_label else "none",
        "divisor": divisor,
        "label_map": sorted(parse_label_map(label_map).items()),
    }
    if (cfg.percentile_region, cfg.percentile_top) != ("brain", 1.0):  # only when set: older caches keep their names
        facts["percentile_scale"] = [cfg.percentile_region if facts["label_mode"] != "none" else "brain",
                                     cfg.percentile_top]
    blob = json.dumps(facts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _item_hash(item: Mapping[str, Any]) -> bytes:
    """Cache file name of one item: its JSON plus (size, mtime) of each source file."""
    stats = []
    for key in _PATH_KEYS:
        value = item.get(key)
        if value is None:
            continue
        for p in [value] if isinstance(value, (str, os.PathLike)) else value:
            try:
                st = os.stat(p)
                stats.append([str(p), st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append([str(p), None, None])  # let the pipeline report the missing file
    blob = json.dumps({"item": item, "files": stats}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32].encode()


class _SurfaceErrors:
    """Mixin: re-raise our DataErrors from MONAI's ``RuntimeError("applying transform")`` wraps.

    (In DataLoader worker processes torch re-wraps errors once more; the message survives.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)  # CacheDataset runs the pipeline here
        except RuntimeError as exc:
            err = medidiff_error_of(exc)
            if err is None:
                raise
            raise err from None

    def __getitem__(self, index: Any) -> Any:
        try:
            return super().__getitem__(index)  # type: ignore[misc]
        except RuntimeError as exc:
            err = medidiff_error_of(exc)
            if err is None:
                raise
            raise err from None


class _Dataset(_SurfaceErrors, Dataset):
    pass


class _CacheDataset(_SurfaceErrors, CacheDataset):
    """MONAI's memory cache, filled by :func:`medidiff.utils.threads.case_map`: worker processes on
    hosts of 8+ cores (threads share one GIL, and the pipeline's MetaTensor dispatch is Python), else threads."""

    def _fill_cache(self, indices: Sequence[int] | None = None) -> list:
        if self.cache_num <= 0:
            return []
        indices = list(range(self.cache_num)) if indices is None else list(indices)
        with case_map(self._load_cache_item, indices, threads=self.num_workers, what="data.cache memory") as items:
            return list(items)


class _PersistentDataset(_SurfaceErrors, PersistentDataset):
    """``mmap``: cached cases are memory-mapped (torch.load(mmap=True)), so a pipeline that cuts a
    window out of each case reads that window's pages, not the whole file (0.26 GB a BraTS case
    with labels; about 0.24 s a case read whole, 0.06 s mapped and cut, on our CPU)."""

    mmap = False

    def _cachecheck(self, item_transformed: Any) -> Any:
        if self.mmap and self.cache_dir is not None:
            # MONAI's own file name for the item (PersistentDataset._cachecheck)
            hashfile = self.cache_dir / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"
            if hashfile.is_file():
                try:
                    return torch.load(hashfile, weights_only=self.weights_only, mmap=True)
                except (pickle.UnpicklingError, RuntimeError):
                    pass  # MONAI's path below deletes and recomputes a corrupt file
        return super()._cachecheck(item_transformed)


def cache_threads(num_workers: int) -> int:
    """Threads that decode the cases into a memory cache up front (worker processes instead on hosts of
    8+ cores: :func:`medidiff.utils.threads.case_map`): the loader's worker count, or this
    rank's share of the cores it may use (:func:`_ranks_on_this_node` ranks per node) if more, at most 16.
    Decoding releases the GIL for most of its time (gzip, numpy): 48 anatomy cases took 5.5 s on one
    thread and 3.6 s on two (2 cores), so a 16-core GPU host with 4 loader workers left most idle."""
    return max(1, num_workers, min(usable_cores() // _ranks_on_this_node(), 16))


def _ranks_on_this_node() -> int:
    """Processes of this job on this node, as its launcher says: torchrun's LOCAL_WORLD_SIZE, the
    deepspeed launcher's LOCAL_SIZE, or SLURM's tasks per node ("4" or "4(x2)"); 1 when none is set."""
    for key in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        digits = re.match(r"\d+", os.environ.get(key, ""))
        if digits and int(digits.group()) > 0:
            return int(digits.group())
    return 1


def make_dataset(
    items: Sequence[Mapping[str, Any]],
    cfg: DataConfig,
    *,
    divisor: int = 1,
    train: bool = True,
    cache_dir: str | Path | None = None,
    label_map: Mapping[Any, Any] | None = None,
    with_label: bool = True,
    random: Sequence[Any] | None = None,
) -> Dataset:
    """A MONAI dataset over manifest ``items`` with the pipeline of ``build_transforms``.

    ``cfg.cache``: ``none`` -> ``Dataset`` (decode every epoch); ``memory`` -> ``CacheDataset``
    (all items cached up front, in RAM); ``disk`` -> ``PersistentDataset`` under
    ``cache_dir`` (or ``cfg.cache_dir``) / ``pipeline-<hash>``. ``random`` replaces the
    augmentation steps (see ``build_transforms``).
    """
    transform = build_transforms(cfg, divisor=divisor, train=train, label_map=label_map, with_label=with_label,
                                 random=random)
    data = [dict(it) for it in items]
    if cfg.cache == "none":
        return _Dataset(data, transform)
    # a random part that starts by cutting a window out of the case (the SR stage: views, or flipped copies)
    cuts_window = bool(random) and getattr(random[0], "cuts_window", False)
    if cfg.cache == "memory":
        # MONAI deep-copies the cached case before the random steps so that they cannot alter the
        # cache. Ours never write into their input (MONAI's dict transforms copy the dict, RandFlipd
        # gets plain tensors from PlainTensorsd, so its bookkeeping lands on a new MetaTensor, the SR
        # window cut returns views of the case that only the batch's stack reads, EnsureTyped a new
        # one or the same unwritten one), so
        # the copy was pure cost: 0.26 GB a BraTS case, 56 MB a 4-modality 128^3 case with regions,
        # every item of every batch (tests/cascade/test_windows.py checks the cache stays unwritten).
        # A custom ``random`` step that writes in place must copy first.
        threads, t0 = cache_threads(cfg.num_workers), time.perf_counter()
        cached = _CacheDataset(data, transform, cache_rate=1.0, num_workers=threads, progress=False, copy_cache=False)
        # where a run's setup goes (a 1164-case anatomy set took ~2.5 min to start on a 16-core GPU host)
        log.info("data.cache memory: %d cases decoded in %.1f s", len(data), time.perf_counter() - t0)
        return cached
    root = cache_dir if cache_dir is not None else cfg.cache_dir
    if not root:
        raise ValueError(
            "data.cache is 'disk' but no cache folder was given: set data.cache_dir, pass "
            "cache_dir=..., or use data.cache: memory"
        )
    folder = Path(root) / f"pipeline-{pipeline_hash(cfg, divisor=divisor, label_map=label_map, with_label=with_label)}"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = _PersistentDataset(data, transform, cache_dir=folder, hash_func=_item_hash)
    dataset.mmap = cuts_window
    return dataset


def _stack(items: Sequence[Any]) -> torch.Tensor:
    """``torch.stack`` of the items as plain tensors; in a loader worker, straight into shared memory.

    A worker's batch reaches the main process through shared memory: stacked into ordinary memory,
    it is copied once more when it is sent (torch's default_collate avoids that copy the same way).
    An anatomy batch of 8 is 138 MB, and the loop waited 38 ms a step for its loader
    (benchmarks/results/loop_h200_20261201b)."""
    tensors = [torch.as_tensor(t).as_subclass(torch.Tensor) for t in items]
    first = tensors[0]
    if torch.utils.data.get_worker_info() is None or any(t.dtype != first.dtype or t.shape != first.shape
                                                         for t in tensors):
        return torch.stack(tensors)  # mixed items: stack's own promotion and size message
    storage = first._typed_storage()._new_shared(sum(t.numel() for t in tensors), device=first.device)
    return torch.stack(tensors, out=first.new(storage).resize_(len(tensors), *first.shape))


def collate_cases(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack a list of pipeline outputs into a batch, keeping case ids.

    Returns ``{"image": (B, C, X, Y, Z) float32 (or "latent" for latent-cache items), "label": (B, C_l, X, Y, Z) (if present),
    "case_id": list[str], "fold": list[int] (if present), "patch_origin"/"window_origin": list of
    int tuples (if present)}``. Tensors are plain ``torch.Tensor``
    (MetaTensor meta dropped: disk caches do not keep it, so no batch relies on it; use
    :mod:`medidiff.data.geometry` for grids).
    """
    if not batch:
        raise ValueError("collate_cases got an empty batch")
    # pipeline outputs carry "image"; latent-cache items (medidiff.latents.cache) carry "latent"
    key = "image" if "image" in batch[0] else "latent"
    out: dict[str, Any] = {key: _stack([b[key] for b in batch])}
    has_label = ["label" in b for b in batch]
    if any(has_label):
        if not all(has_label):
            missing = [str(b.get("case_id")) for b in batch if "label" not in b]
            raise ValueError(f"batch mixes labelled and unlabelled cases (no label: {missing})")
        out["label"] = _stack([b["label"] for b in batch])
    out["case_id"] = [str(b.get("case_id", "")) for b in batch]
    if all("fold" in b for b in batch):
        out["fold"] = [int(b["fold"]) for b in batch]
    for key in _INDEX_KEYS:  # host-side integers (no device tensor to read back before slicing)
        if all(key in b for b in batch):
            out[key] = [tuple(int(v) for v in b[key]) for b in batch]
    return out


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A deterministic loader: the same ``seed`` gives identical batches, flips included.

    The torch Generator drives the shuffle order; MONAI's DataLoader seeds the transforms'
    random state from it (``num_workers=0``: once here; workers: per worker and epoch via
    ``worker_init_fn``), so the sequence of epochs is reproducible either way.
    """
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=gen,
        collate_fn=collate_cases,
        persistent_workers=False,
    )


def manifest_datasets(
    data: DataConfig, run_dir: Path, *, divisor: int, with_label: bool, train_transforms: bool = True,
    train_random: Sequence[Any] | None = None, heldout: bool = True,
) -> tuple[Dataset, Dataset | None]:
    """(train, held-out fold or None) datasets of ``data.manifest`` through the experiment's pipeline.

    The held-out fold is ``data.fold`` (None: every case trains); the disk cache lives under
    ``data.cache_dir`` or ``<run_dir>/cache``; ``train_transforms`` False drops augmentation;
    ``train_random`` replaces the training set's random steps (the held-out set has none).
    ``heldout`` False leaves the held-out fold out of the training (it is still not trained on) without
    building its dataset: with ``data.cache: memory`` that is decoding every held-out case.
    """
    if not data.manifest:
        raise MedidiffError("data.manifest is empty: build one with `medidiff manifest build` and set data.manifest")
    items = load_manifest(data.manifest, data.root or None)
    train_items, val_items = split_folds(items, data.fold) if data.fold is not None else (items, [])
    kw = dict(divisor=divisor, cache_dir=Path(data.cache_dir) if data.cache_dir else Path(run_dir) / "cache",
              label_map=label_map_of(read_manifest(data.manifest)), with_label=with_label)
    train = make_dataset(train_items, data, train=train_transforms, random=train_random, **kw)
    val = make_dataset(val_items, data, train=False, **kw) if val_items and heldout else None
    return train, val
