"""Per-case work on several threads, in order: what evaluation runs over hundreds of cases.

Reading a NIfTI (zlib), resampling, FFTs and scipy's filters release the GIL, so threads give most
of the cores (1.5-1.8x on 2 cores for loading, brain masks and spectra) without pickling volumes to
processes, and an error reaches the caller as it was raised (one-line messages about bad files).
"""

from __future__ import annotations

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


def thread_map(fn: Callable[[T], R], items: Iterable[T], *, threads: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on ``threads`` threads (default :func:`default_threads`; 0 or 1: this
    thread), results in the items' order. The first failing item's own exception is raised when its
    turn comes, and the items not started by then are never run."""
    threads = default_threads() if threads is None else int(threads)
    if threads <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        yield from pool.map(fn, items)
    finally:  # also when the caller stops early or an item failed: cancel what has not started
        pool.shutdown(wait=True, cancel_futures=True)
