"""The training set held on the device (``train.data_on_device``): no loader work during training.

Why: the anatomy recipe's step at 8 x 80x96x80 takes ~21 ms on an H200 with CUDA graphs, and its
batch is 89 MiB; the loader's workers, the main process's pin thread and the host-to-device copy
fed ~120 vol/s against the net's ~376 (benchmarks/results/loop_h200_20261201b). A training set
whose items are the same every epoch (no random transform after the cache: the anatomy recipe has
flip_prob 0) needs none of that work more than once: its 285 cases are 3.3 GB on the card.

Every item is loaded once, before the first step, through the same pipeline, item seeds, collate
function and worker processes as the loader, as a batch of one on the device; a training batch is
the concatenation of its items' batches. The batches are those of :func:`~medidiff.training.loop._loader`
(same :class:`~medidiff.training.sampler.StreamSampler` keys, so resume and ranks' partitions are
unchanged), and equal to them exactly: the collate functions stack items along a new first
dimension and list their host fields, which concatenating batches of one reproduces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medidiff.config import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DeviceBatches", "random_steps", "concat_batches"]

# the share of the device's free memory the training set may take (the net, its activations and the
# optimizer need the rest)
MAX_SHARE_OF_FREE = 0.5


def random_steps(dataset: Dataset) -> list[str]:
    """Names of the random steps that run on every item after any cache; [] when the dataset's items are
    the same every epoch. Raises ConfigError when that cannot be told (a dataset without a MONAI
    pipeline that does not declare ``random_items = False``)."""
    if getattr(dataset, "random_items", None) is False:
        return []
    transform = getattr(dataset, "transform", None)
    if transform is None or not hasattr(transform, "transforms"):
        raise ConfigError(f"train.data_on_device: cannot tell whether a {type(dataset).__name__}'s items change from "
                          "epoch to epoch (no MONAI pipeline in .transform); set train.data_on_device: false")
    from monai.transforms import Compose, Randomizable

    steps = transform.flatten().transforms if isinstance(transform, Compose) else transform.transforms
    return [type(t).__name__ for t in steps if isinstance(t, Randomizable)]


def concat_batches(parts: list[Any]) -> Any:
    """One batch from batches (of one item each): tensors concatenated along the first dimension,
    lists of host values (one per item) joined, dicts and sequences of tensors field by field."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: concat_batches([p[k] for p in parts]) for k in first}
    if isinstance(first, list) and not any(isinstance(v, torch.Tensor) for v in first):
        return [v for p in parts for v in p]  # per-item host fields (collate_cases' case ids, origins)
    if isinstance(first, (list, tuple)):  # per-position tensors (default_collate of a sequence field)
        return type(first)(concat_batches(list(fields)) for fields in zip(*parts))
    raise TypeError(f"train.data_on_device: cannot join batch fields of type {type(first).__name__}")


class DeviceBatches:
    """Endless batches of ``batch_size`` items in the order of ``keys`` (``(index, item_seed)``, as
    :class:`~medidiff.training.sampler.StreamSampler` yields them), from items held on ``device``.

    ``load`` turns ``(index, item_seed)`` keys into host batches of one (a DataLoader over
    :class:`~medidiff.training.sampler.SeededItems` with the run's collate function and workers);
    ``move`` puts one on the device. Everything is loaded in the constructor."""

    def __init__(self, dataset: Dataset, keys: Iterable[tuple[int, int]], batch_size: int, *,
                 load: Callable[[list[tuple[int, int]]], DataLoader], move: Callable[[Any], Any],
                 device: torch.device, item_seed: Callable[[int], int]) -> None:
        steps = random_steps(dataset)
        if steps:
            raise ConfigError(f"train.data_on_device: the training pipeline draws random steps every epoch ({', '.join(steps)}); "
                              "items held on the device would repeat the first epoch's draws: set data.flip_prob: 0 "
                              "(and no random window cut), or train.data_on_device: false")
        n = len(dataset)  # type: ignore[arg-type]
        loaded = iter(load([(i, item_seed(i)) for i in range(n)]))
        self.items: list[Any] = []
        nbytes = 0
        for i, batch in enumerate(loaded):
            batch = move(batch)
            if i == 0:
                _check_room(_bytes(batch) * n, device)
            nbytes += _bytes(batch)
            self.items.append(batch)
        if hasattr(loaded, "_shutdown_workers"):
            loaded._shutdown_workers()
        log.info("train.data_on_device: %d training items on %s (%.2f GiB)", n, device, nbytes / 2**30)
        self.keys, self.batch_size = keys, batch_size

    def __iter__(self) -> Iterator[Any]:
        keys = iter(self.keys)
        while True:
            yield concat_batches([self.items[next(keys)[0]] for _ in range(self.batch_size)])


def _bytes(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel() * batch.element_size()
    if isinstance(batch, Mapping):
        return sum(_bytes(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(_bytes(v) for v in batch)
    return 0


def _check_room(needed: int, device: torch.device) -> None:
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    if needed > MAX_SHARE_OF_FREE * free:
        raise ConfigError(f"train.data_on_device: the training set needs {needed / 2**30:.1f} GiB on {device}, more than "
                          f"half of its {free / 2**30:.1f} GiB free; set train.data_on_device: false")
