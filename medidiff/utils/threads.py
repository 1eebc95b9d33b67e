"""Per-case work on several threads, in order: what evaluation runs over hundreds of cases.

Reading a NIfTI (zlib), resampling, FFTs and scipy's filters release the GIL, so threads give most
of the cores (1.5-1.8x on 2 cores for loading, brain masks and spectra) without pickling volumes to
processes, and an error reaches the caller as it was raised (one-line messages about bad files).
Decoding cases through the data pipeline is the exception on many cores: MONAI's MetaTensor
dispatch holds the GIL for a large share of a case, and 16 threads reached only ~2.3x one core on
the 16-core GPU host, so :func:`case_map` runs it in worker processes there
(:func:`decode_processes` says when).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["default_threads", "thread_map", "decode_processes", "case_map"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 8  # per-case steps of a few hundred ms: more threads mostly wait on memory


def default_threads() -> int:
    """The cores this process may use, at most :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


@contextlib.contextmanager
def thread_map(fn: Callable[[T], R], items: Iterable[T], *, threads: int | None = None) -> Iterator[Iterator[R]]:
    """``with thread_map(fn, items) as results:`` -- ``map(fn, items)`` on ``threads`` threads (default
    :func:`default_threads`; 0 or 1: this thread), results in the items' order.

    The first failing item's own exception is raised when its turn comes; when the block ends, early
    or by any error (the caller's too), the items not started are never run. Meanwhile torch's own
    thread count is divided among the threads: torch ops inside ``fn`` (resampling, pooling) would
    otherwise each start every core's worth of threads (8 x 16 on a 16-core host).
    """
    threads = default_threads() if threads is None else int(threads)
    if threads <= 1:
        yield map(fn, items)
        return
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, torch_threads // threads))
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        yield pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(torch_threads)


def decode_processes(num_items: int, threads: int) -> int:
    """Worker processes for decoding ``num_items`` cases through the data pipeline where ``threads``
    threads would (0: use the threads): on hosts of 8+ cores, with 16+ cases a process, where fork
    exists. Why only there: on our 2-core CPU both ways took the same time (192 anatomy cases:
    16.4-18.5 s either way; one core alone 0.16 s a case), since one thread's torch ops already use
    both cores; on the 16-core GPU host 16 threads filled a 1164-case cache at about 2.3x one core
    (81 s, a second run's fill beside it). The gain there is unmeasured: the callers log their seconds."""
    import multiprocessing

    if threads < 8 or num_items < 16 * threads or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return threads


class _Mapped:
    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self.fn, self.items = fn, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> R:
        return self.fn(self.items[i])


def _as_is(item: R) -> R:
    return item


def _owned(item: Any) -> Any:
    """``item`` with every tensor copied out of the shared memory a worker handed it over in (a
    1164-case anatomy set is 12 GB: it must not stay in /dev/shm)."""
    import torch

    if isinstance(item, torch.Tensor):
        return item.clone()
    if isinstance(item, dict):
        return {k: _owned(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return type(item)(_owned(v) for v in item)
    return item


def _process_iter(fn: Callable[[T], R], items: Sequence[T], processes: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``processes`` forked worker processes (torch DataLoader workers: one
    intra-op thread each, results handed over in shared memory and copied out of it), in order.
    ``fn`` may be a closure (fork copies it; only the results are pickled). A DataError raised in a
    worker comes back as a DataError naming its file (torch rebuilds it from the worker's message)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_Mapped(fn, items), batch_size=None, shuffle=False, num_workers=processes,
                        collate_fn=_as_is, prefetch_factor=2, multiprocessing_context="fork")
    return (_owned(item) for item in loader)


@contextlib.contextmanager
def case_map(fn: Callable[[T], R], items: Sequence[T], *, threads: int | None = None, what: str = "cases"
             ) -> Iterator[Iterator[R]]:
    """``with case_map(fn, items) as results:`` -- :func:`thread_map`, or worker processes where
    :func:`decode_processes` says (hosts of 8+ cores): decoding cases through the data pipeline.
    Results in the items' order, as they come. Workers that cannot start (a /dev/shm too small for
    the hand-over, a daemonic caller) leave a warning and the threads do the work; a MedidiffError
    (a bad file) is raised as it is."""
    from medidiff.errors import MedidiffError

    threads = default_threads() if threads is None else int(threads)
    processes = decode_processes(len(items), threads)
    if processes:
        try:
            results = _process_iter(fn, items, processes)  # the workers start here
            first = next(results)
        except MedidiffError:
            raise
        except (RuntimeError, OSError, AssertionError) as exc:
            log.warning("%s: decoding in %d processes failed (%s); decoding in threads", what, processes,
                        str(exc).splitlines()[-1][:200] if str(exc) else type(exc).__name__)
        else:
            log.info("%s: decoding %d cases on %d processes", what, len(items), processes)
            yield itertools.chain([first], results)
            return
    log.info("%s: decoding %d cases on %d threads", what, len(items), max(threads, 1))
    with thread_map(fn, items, threads=threads) as results:
        yield results
