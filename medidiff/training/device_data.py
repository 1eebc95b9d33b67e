"""The training set held on the device (``train.data_on_device``): no loader work during training.

Why: the anatomy recipe's step at 8 x 80x96x80 takes ~21 ms on an H200 with CUDA graphs, and its
batch is 89 MiB; the loader's workers, the main process's pin thread and the host-to-device copy
fed ~120 vol/s against the net's ~376 (benchmarks/results/loop_h200_20261201b). A training set
whose items are the same every epoch (no random transform after the cache) needs none of that work
more than once: its 285 cases are 3.3 GB on the card.

Two random steps are replayed on the device instead of refused, each alone in the pipeline after
the cache: a left-right flip (``data.flip_prob``, MONAI's ``RandFlipd``; :class:`DeviceFlip`) and the
SR stage's training window (:class:`~medidiff.cascade.windows.RandSRWindowd`, which also flips;
:class:`DeviceWindow`). Items are loaded without the step (unflipped; whole cases), and each batch
applies it on the device to every item, deciding with the same seeded draw the loader's pipeline
makes, so the step costs no loader work either. The SR stage's loop with CUDA graphs waited for
its loader's windows (95-105 vol/s through 4 workers against the net's 169-171,
benchmarks/results/loop_h200_20261201d and _20261201e).

Every item is loaded once, before the first step, through the same pipeline, item seeds, collate
function and worker processes as the loader, as a batch of one on the device; a training batch is
the concatenation of its items' batches. The batches are those of :func:`~medidiff.training.loop._loader`
(same :class:`~medidiff.training.sampler.StreamSampler` keys, so resume and ranks' partitions are
unchanged), and equal to them exactly: the collate functions stack items along a new first
dimension and list their host fields, which concatenating batches of one reproduces. The first
batch is checked against the loader's own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medidiff.config import ConfigError
from medidiff.training.sampler import seed_transform

log = logging.getLogger(__name__)

__all__ = ["DeviceBatches", "DeviceFlip", "DeviceWindow", "concat_batches", "random_steps", "refuse_random_items",
           "same_batch"]

# the share of the device's free memory the training set may take (the net, its activations and the
# optimizer need the rest)
MAX_SHARE_OF_FREE = 0.5


# what a user changes to drop a random step (the others: train.data_on_device: false)
_HINTS = {
    "RandFlipd": "one left-right flip is applied on the device, not two",
    "RandSRWindowd": "the SR stage's window is cut on the device only when no other random step follows it",
}


class NotHeld(ConfigError):
    """``train.data_on_device`` cannot hold this run's training set. ``reason`` is why, without the
    advice to turn it off that the message ends with: ``data_on_device: auto`` logs the reason and
    keeps the loader, ``true`` stops with the message."""

    def __init__(self, reason: str, *, alternatives: bool = False) -> None:
        self.reason, self.alternatives = reason, alternatives
        super().__init__(f"train.data_on_device: {reason}; {'or ' if alternatives else ''}set train.data_on_device: false")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickling (a raise in a worker or a spawned rank) would otherwise rebuild it from the whole message,
        # wrapping the prefix and advice twice
        return (_not_held, (self.reason, self.alternatives))


def _not_held(reason: str, alternatives: bool) -> NotHeld:
    return NotHeld(reason, alternatives=alternatives)


def _pipeline_steps(transform: Any) -> list[Any]:
    from monai.transforms import Compose

    return list(transform.flatten().transforms if isinstance(transform, Compose) else transform.transforms)


def random_steps(dataset: Dataset) -> list[str]:
    """Names of the random steps that run on every item after any cache; [] when the dataset's items are
    the same every epoch. A step counts as random as MONAI's caches count it: a ``RandomizableTrait`` or
    a callable that is not a MONAI ``Transform``. Raises ConfigError when that cannot be told (a dataset
    without a MONAI pipeline that does not declare ``random_items = False``)."""
    if getattr(dataset, "random_items", None) is False:
        return []
    transform = getattr(dataset, "transform", None)
    if transform is None or not hasattr(transform, "transforms"):
        raise NotHeld(f"cannot tell whether a {type(dataset).__name__}'s items change from epoch to epoch "
                      "(no MONAI pipeline in .transform)")
    from monai.transforms import RandomizableTrait, Transform

    return [type(t).__name__ for t in _pipeline_steps(transform)
            if isinstance(t, RandomizableTrait) or not isinstance(t, Transform)]


def refuse_random_items(dataset: Dataset) -> DeviceFlip | DeviceWindow | None:
    """ConfigError, naming what to change, unless the dataset's items are the same every epoch but for
    one step the device replays (returned: a left-right flip as :class:`DeviceFlip`, the SR stage's
    window as :class:`DeviceWindow`): items held on the device would otherwise repeat the first epoch's
    random draws for the whole run."""
    steps = random_steps(dataset)
    seedable = hasattr(getattr(dataset, "transform", None), "set_random_state")
    if steps == ["RandFlipd"] and seedable:
        return DeviceFlip(dataset)
    if steps == ["RandSRWindowd"] and seedable:
        return DeviceWindow(dataset)
    if steps:
        shown = [name for name in steps if name not in _REPLAYED] or steps  # a replayed step alone is not the problem
        hints = sorted({_HINTS.get(name, f"{name} is random") for name in shown})
        raise NotHeld(f"the training pipeline draws random steps every epoch ({', '.join(shown)}); items held on "
                      f"the device would repeat the first epoch's draws: {'; '.join(hints)}", alternatives=True)
    return None


# the random steps the device replays, each when it is the pipeline's only one
_REPLAYED = ("RandFlipd", "RandSRWindowd")


class DeviceFlip:
    """The dataset pipeline's one ``RandFlipd``, replayed on items held on the device.

    :meth:`off` loads items unflipped (its probability 0: its random draw still happens, so every
    other draw is unchanged); :meth:`flips` seeds the pipeline for an item as the run's loaders do
    (:func:`~medidiff.training.sampler.seed_transform`) and reads the step's own decision; :meth:`apply`
    flips the step's fields of a batch of one along its spatial axes, as its ``Flip`` does.
    """

    def __init__(self, dataset: Dataset) -> None:
        from monai.transforms import RandFlipd

        self.dataset = dataset
        self.step = next(t for t in _pipeline_steps(dataset.transform) if isinstance(t, RandFlipd))  # type: ignore[attr-defined]
        axis = self.step.flipper.spatial_axis
        self.axes = None if axis is None else ([axis] if isinstance(axis, int) else list(axis))
        self.keys = [str(k) for k in self.step.keys]
        self.what = "left-right flips applied there"

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        prob = self.step.prob
        self.step.prob = 0.0
        try:
            yield
        finally:
            self.step.prob = prob

    def flips(self, item_seed: int) -> bool:
        seed_transform(self.dataset, item_seed)
        self.step.randomize(None)
        return bool(self.step._do_transform)

    def apply(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for key in self.keys:
            if key in out:
                x = out[key]  # (1, C, *spatial)
                n = x.ndim - 2
                axes = range(n) if self.axes is None else [a % n for a in self.axes]
                out[key] = x.flip([2 + a for a in axes])
        return out

    def item(self, batch: Any, item_seed: int) -> Any:
        """``batch`` (one item, loaded unflipped) as the loader would give it for ``item_seed``."""
        return self.apply(batch) if self.flips(item_seed) else batch


class DeviceWindow:
    """The SR stage's :class:`~medidiff.cascade.windows.RandSRWindowd`, replayed on whole cases held on
    the device: :meth:`off` loads whole, unflipped cases (the step's ``enabled`` off); :meth:`item`
    seeds the pipeline for an item as the run's loaders do, draws the step's window (and flip), cuts it
    out of the held case with the step's own :meth:`~medidiff.cascade.windows.RandSRWindowd.cut` and
    lists its origins as the collate function does."""

    def __init__(self, dataset: Dataset) -> None:
        # imported here: medidiff.cascade imports the training loop, which imports this module
        from medidiff.cascade.windows import PATCH_ORIGIN, WINDOW_ORIGIN, RandSRWindowd

        self.dataset = dataset
        self.step = next(t for t in _pipeline_steps(dataset.transform)  # type: ignore[attr-defined]
                         if isinstance(t, RandSRWindowd))
        self.keys = [str(k) for k in self.step.keys]
        self.origin_keys = PATCH_ORIGIN, WINDOW_ORIGIN
        self.what = "SR windows cut there"

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        enabled, self.step.enabled = self.step.enabled, False
        try:
            yield
        finally:
            self.step.enabled = enabled

    def item(self, batch: Mapping[str, Any], item_seed: int) -> dict[str, Any]:
        """``batch`` (one whole case) as the loader would give its window for ``item_seed``."""
        seed_transform(self.dataset, item_seed)
        self.step.randomize()
        out = {key: self.step.cut(value, key) if key in self.keys else value for key, value in batch.items()}
        inside, start = self.step.origins()
        out[self.origin_keys[0]], out[self.origin_keys[1]] = [inside], [start]  # collate_cases' host lists
        return out


def concat_batches(parts: list[Any]) -> Any:
    """One batch from batches (of one item each): tensors concatenated along the first dimension,
    lists of host values (one per item) joined, dicts and sequences of tensors field by field.
    :class:`DeviceBatches` checks once that this equals the run's collate function on the same items."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        if any(p.keys() != first.keys() for p in parts):
            raise ValueError(f"train.data_on_device: items with different fields in one batch "
                             f"({sorted(set().union(*(p.keys() for p in parts)) - set(first.keys()))} not in all)")
        return {k: concat_batches([p[k] for p in parts]) for k in first}
    if isinstance(first, list) and not any(isinstance(v, torch.Tensor) for v in first):
        return [v for p in parts for v in p]  # per-item host fields (collate_cases' case ids, origins)
    if isinstance(first, (list, tuple)):  # per-position tensors (default_collate of a sequence field)
        return type(first)(concat_batches(list(fields)) for fields in zip(*parts))
    raise TypeError(f"train.data_on_device: cannot join batch fields of type {type(first).__name__}")


def same_batch(a: Any, b: Any) -> bool:
    """Whether two batches hold the same fields, values, dtypes and shapes (tensors compared on a's device)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b.to(a.device)))
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys() and all(
            same_batch(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_batch(x, y) for x, y in zip(a, b))
    return bool(a == b)


class DeviceBatches:
    """Endless batches of ``batch_size`` items in the order of ``keys`` (``(index, item_seed)``, as
    :class:`~medidiff.training.sampler.StreamSampler` yields them), from items held on ``device``.

    ``load(keys, batch_size)`` makes the run's DataLoader over those keys (its
    :class:`~medidiff.training.sampler.SeededItems`, collate function and workers); every item is loaded
    through it as a batch of one and ``move``d to the device, in the constructor. The first batch is
    checked against the loader's own batch of the same items, so a collate function whose batches are not
    joined batches of one is refused rather than trained on. ``agree(flag)`` is True when ``flag`` is True
    on any rank (every rank must refuse together, or the others wait in the first step's collective)."""

    def __init__(self, dataset: Dataset, keys: Iterable[tuple[int, int]], batch_size: int, *,
                 load: Callable[[list[tuple[int, int]], int], DataLoader], move: Callable[[Any], Any],
                 device: torch.device, item_seed: Callable[[int], int],
                 agree: Callable[[bool], bool] = lambda flag: flag) -> None:
        self.replay = refuse_random_items(dataset)
        t0 = time.perf_counter()
        n = len(dataset)  # type: ignore[arg-type]
        all_keys = [(i, item_seed(i)) for i in range(n)]
        self.items: list[Any] = []
        nbytes = 0
        # without the replayed step while loading, here and in the workers (they copy the dataset at iter())
        out_of_memory = False
        with self.replay.off() if self.replay is not None else contextlib.nullcontext():
            loaded = iter(load(all_keys, 1))
            try:
                for i, batch in enumerate(loaded):
                    try:
                        batch = move(batch)
                    except torch.OutOfMemoryError:  # the first item's size did not foresee it: all ranks learn below
                        out_of_memory = True
                        break
                    if i == 0:
                        problem = _room_problem(_bytes(batch) * n, device)
                        if problem is not None:
                            log.warning("train.data_on_device: %s", problem)  # this rank's own reason, whichever rank reports
                        if agree(problem is not None):
                            raise NotHeld(problem or "another rank's GPU has no room for the training set (its log says why)")
                    nbytes += _bytes(batch)
                    self.items.append(batch)
            finally:
                if hasattr(loaded, "_shutdown_workers"):
                    loaded._shutdown_workers()
        # every rank reaches this (a rank out of memory stops loading early), so all refuse together
        if agree(out_of_memory):
            self.items.clear()
            raise NotHeld(f"{'this' if out_of_memory else 'another'} rank's GPU ran out of memory while loading the "
                          "training set")
        width = min(batch_size, n)
        whole = move(next(iter(load(all_keys[:width], width))))  # the loader's own batch, flips or windows and all
        try:
            joined = concat_batches([self._item(key) for key in all_keys[:width]])
        except (TypeError, ValueError) as e:  # fields concat_batches cannot join (its message says which)
            raise NotHeld(str(e).removeprefix("train.data_on_device: ")) from e
        if not same_batch(whole, joined):
            raise NotHeld("this run's collate function does not batch items as joined batches of one")
        log.info("train.data_on_device: %d training items on %s (%.2f GiB) in %.1f s%s", n, device, nbytes / 2**30,
                 time.perf_counter() - t0, f", {self.replay.what}" if self.replay is not None else "")
        self.keys, self.batch_size = keys, batch_size

    def _item(self, key: tuple[int, int]) -> Any:
        index, seed = key
        return self.items[index] if self.replay is None else self.replay.item(self.items[index], seed)

    def __iter__(self) -> Iterator[Any]:
        keys = iter(self.keys)
        while True:
            yield concat_batches([self._item(next(keys)) for _ in range(self.batch_size)])


def _bytes(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel() * batch.element_size()
    if isinstance(batch, Mapping):
        return sum(_bytes(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(_bytes(v) for v in batch)
    return 0


def _room_problem(needed: int, device: torch.device) -> str | None:
    """Why ``needed`` bytes of training set do not fit on ``device`` (None: they do; a CPU always has room)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if needed > MAX_SHARE_OF_FREE * free:
        return (f"the training set needs {needed / 2**30:.1f} GiB on {device}, more than half of its "
                f"{free / 2**30:.1f} GiB free")
    return None
