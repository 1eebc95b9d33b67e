"""A data-order sampler that can resume mid-epoch exactly.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)``, sharded across ranks; the
sampler can start at any position inside an epoch, so a resumed run sees exactly the batches the
uninterrupted run would have seen. (torch's DistributedSampler reshuffles per epoch too, but
cannot start mid-epoch.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "SeededItems", "StreamSampler", "derive_seed", "seed_transform"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64-style mixing: nearby inputs give unrelated seeds)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x & 0x7FFFFFFFFFFFFFFF


class ResumableSampler(Sampler[int]):
    """Per-rank indices of a seeded epoch permutation, from a start position.

    Every rank gets ``per_rank = n // world_size`` indices per epoch (the tail is dropped so all
    ranks step together). ``set_position(epoch, start)`` makes the next iteration yield the
    ``start``-th index onwards of that epoch.
    """

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if n < world_size:
            raise ValueError(f"{n} samples cannot be split over {world_size} ranks")
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.per_rank = n // world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} outside an epoch of {self.per_rank} samples per rank")
        self.epoch, self.start = epoch, start

    def epoch_order(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return order[self.rank : self.per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order(self.epoch)[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class StreamSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, item_seed)`` keys: full batches of each epoch of ``sampler``, epoch after epoch.

    Starts at batch ``position`` of ``epoch``; each epoch yields ``batches_per_epoch * batch_size``
    indices (the tail that does not fill a batch is dropped, as ``drop_last`` did), so one
    long-lived DataLoader (with persistent workers) replaces a loader per epoch. ``item_seed`` =
    derive_seed(seed, epoch, index) seeds that item's random transforms (see :class:`SeededItems`),
    so augmentation does not depend on which worker loads an item or on where a run was resumed.
    """

    def __init__(self, sampler: ResumableSampler, batch_size: int, epoch: int, position: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.per_epoch = (sampler.per_rank // batch_size) * batch_size
        if self.per_epoch == 0:
            raise ValueError(f"an epoch of {sampler.per_rank} samples per rank holds no batch of {batch_size}")
        if not 0 <= position * batch_size < self.per_epoch:
            raise ValueError(f"position {position} outside an epoch of {self.per_epoch // batch_size} batches")
        self.epoch, self.start = epoch, position * batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self.start
        while True:
            for index in self.sampler.epoch_order(epoch)[start:self.per_epoch]:
                yield index, derive_seed(self.sampler.seed, epoch, index)
            epoch, start = epoch + 1, 0


class SeededItems(torch.utils.data.Dataset):
    """``dataset[(index, item_seed)]``: seeds the dataset's random transforms, then loads the item.

    MONAI datasets keep their pipeline in ``.transform`` (a Compose with ``set_random_state``);
    other datasets are loaded unchanged. Works the same in the main process and in workers.
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, item_seed = key
        seed_transform(self.dataset, item_seed)
        return self.dataset[index]


def seed_transform(dataset: Any, item_seed: int) -> None:
    """Seed ``dataset.transform``'s random steps for one item, as every loader of the run does
    (:class:`SeededItems`; :mod:`medidiff.training.device_data` replays the same draws)."""
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=item_seed % 2**32)
