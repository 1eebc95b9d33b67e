"""Per-case work on several threads, in order: what evaluation runs over hundreds of cases.

Reading a NIfTI (zlib), resampling, FFTs and scipy's filters release the GIL, so threads give most
of the cores (1.5-1.8x on 2 cores for loading, brain masks and spectra) without pickling volumes to
processes, and an error reaches the caller as it was raised (one-line messages about bad files).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["default_threads", "thread_map"]

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
