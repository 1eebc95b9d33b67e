"""A data-order sampler that can resume mid-epoch exactly.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)``, sharded across ranks; the
sampler can start at any position inside an epoch, so a resumed run sees exactly the batches the
uninterrupted run would have seen. (torch's DistributedSampler reshuffles per epoch too, but
cannot start mid-epoch.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "derive_seed"]


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
