"""Per-case work on several threads, in order: what evaluation runs over hundreds of cases.

Reading a NIfTI (zlib), resampling, FFTs and scipy's filters release the GIL, so threads give most
of the cores (1.5-1.8x on 2 cores for loading, brain masks and spectra) without pickling volumes to
processes, and an error reaches the caller as it was raised (one-line messages about bad files).
Decoding cases through the data pipeline may be the exception on many cores (MONAI's MetaTensor
dispatch runs Python for a share of each case, under the GIL): :func:`case_map` runs it in worker
processes on hosts of 8+ cores (:func:`decode_processes` says when; the gain there is unmeasured).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["usable_cores", "default_threads", "thread_map", "decode_processes", "case_map", "BatchWriter"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 8  # per-case steps of a few hundred ms: more threads mostly wait on memory


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores this process may use, at most :data:`MAX_THREADS`."""
    return min(MAX_THREADS, usable_cores())


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
    threads would (0: use the threads): Linux hosts of 8+ usable cores, at most one a core, with 16+
    cases a process. Why only there: on our 2-core CPU both ways took the same time (192 anatomy
    cases: 15-18.6 s either way), since one thread's torch ops already use both cores; on the 16-core
    GPU host 16 threads filled a 1164-case cache in 81 s with a second run's fill on the same cores
    (0.16 s a case on one core of our CPU: the GPU host's own one-core figure is not measured). The
    gain of processes there is unmeasured: the callers log which way they went and their seconds."""
    cores = usable_cores()
    if sys.platform != "linux" or cores < 8 or threads < 2:
        return 0
    processes = min(threads, cores)
    return processes if num_items >= 16 * processes else 0


ITEM_TIMEOUT_S = 300  # a worker silent this long counts as failed (the rest then decodes in threads)


class _Mapped:
    """The items as a dataset whose workers run ``fn`` and put the result's tensors into shared memory
    themselves: a full /dev/shm then raises in the worker, which torch hands to the parent, where the
    queue's feeder thread would drop the item and leave the parent waiting."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self.fn, self.items = fn, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> R:
        from medidiff.errors import MedidiffError

        try:
            result = self.fn(self.items[i])
        except MedidiffError:
            raise  # torch rebuilds it in the parent from its message: a DataError still names its file
        except Exception as exc:  # the pipeline's own error, told apart from a worker that failed
            raise _ItemFailed(f"{type(exc).__name__}: {exc}") from exc
        return _tensors(result, lambda t: t.share_memory_())


class _ItemFailed(Exception):
    """``fn`` raised on an item inside a worker (torch re-raises it in the parent with the worker's
    traceback as text); :func:`_in_processes` runs that item again here to raise the original."""


def _as_is(item: R) -> R:
    return item


def _tensors(item: Any, op: Callable[[Any], Any]) -> Any:
    """``item`` with ``op`` applied to every tensor in it (dicts, lists, tuples, named tuples)."""
    import torch

    if isinstance(item, torch.Tensor):
        return op(item)
    if isinstance(item, dict):
        return {k: _tensors(v, op) for k, v in item.items()}
    if isinstance(item, tuple) and hasattr(item, "_fields"):
        return type(item)(*(_tensors(v, op) for v in item))
    if isinstance(item, (list, tuple)):
        return type(item)(_tensors(v, op) for v in item)
    return item


def _process_results(fn: Callable[[T], R], items: Sequence[T], processes: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``processes`` forked worker processes (torch DataLoader workers: one
    intra-op thread each), in order, each result copied out of shared memory (a 1164-case anatomy set
    is 12 GB: it must not stay in /dev/shm). ``fn`` may be a closure (fork copies it; only results are
    pickled). A DataError raised in a worker comes back as a DataError naming its file (torch rebuilds
    it from the worker's message). The workers stop when this generator ends or is closed."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_Mapped(fn, items), batch_size=None, shuffle=False, num_workers=processes,
                        collate_fn=_as_is, prefetch_factor=2, multiprocessing_context="fork", timeout=ITEM_TIMEOUT_S)
    it = iter(loader)
    try:
        for item in it:
            yield _tensors(item, lambda t: t.clone())
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # what the iterator's __del__ runs, now
        if shutdown is not None:
            shutdown()


def _in_processes(fn: Callable[[T], R], items: Sequence[T], processes: int, threads: int, what: str
                  ) -> Iterator[R]:
    """:func:`_process_results`, finishing in threads from the first item the workers could not give (a
    worker killed or silent, a /dev/shm too small, a daemonic caller that may not start them): a
    warning says so. A MedidiffError (a bad file) is raised as it is; any other error of ``fn`` itself
    is raised by running its item again in this process (its own type, message and traceback, as
    without workers), with no warning about the workers."""
    from medidiff.errors import MedidiffError

    done = 0
    results = _process_results(fn, items, processes)
    try:
        for result in results:
            yield result
            done += 1
    except MedidiffError:
        raise
    except _ItemFailed as exc:
        results.close()
        fn(items[done])  # raises the item's own error here
        raise RuntimeError(f"{what}: item {done} failed in a worker process but not here: {exc}") from None
    except (RuntimeError, OSError, AssertionError) as exc:
        results.close()
        log.warning("%s: decoding in %d processes stopped after %d of %d cases (%s); the rest in threads", what,
                    processes, done, len(items), str(exc).strip().splitlines()[-1][:200] if str(exc).strip()
                    else type(exc).__name__)
        with thread_map(fn, items[done:], threads=threads) as rest:
            yield from rest
    finally:
        results.close()


@contextlib.contextmanager
def case_map(fn: Callable[[T], R], items: Sequence[T], *, threads: int | None = None, what: str = "cases"
             ) -> Iterator[Iterator[R]]:
    """``with case_map(fn, items) as results:`` -- :func:`thread_map`, or worker processes where
    :func:`decode_processes` says (Linux hosts of 8+ cores): decoding cases through the data pipeline.
    Results in the items' order, as they come; the workers stop when the block ends."""
    threads = default_threads() if threads is None else int(threads)
    items = list(items)
    processes = decode_processes(len(items), threads)
    if processes:
        log.info("%s: decoding %d cases on %d processes", what, len(items), processes)
        results = _in_processes(fn, items, processes, threads, what)
        try:
            yield results
        finally:
            results.close()
        return
    log.info("%s: decoding %d cases on %d threads", what, len(items), max(threads, 1))
    with thread_map(fn, items, threads=threads) as results:
        yield results


WRITER_THREADS = MAX_THREADS  # cases written at once, each on its own thread (a case's volumes one after another)


class BatchWriter:
    """``with BatchWriter(fn) as writer: writer.submit(batch)`` -- ``fn(*item)`` for every item of a batch on
    worker threads (at most :data:`WRITER_THREADS`, and the usable cores), in parallel and while the caller makes
    the next batches: what ``medidiff generate`` writes (NIfTI + gzip, the BraTS grid's resample: ~3-4 s of one
    core a case on the H100 host, where the card samples a 2 mm case in under 0.25 s,
    results/generate_write_h100_20261206) beside its sampling, not after it in the sampling thread.

    ``submit`` queues the batch, then waits for the oldest batches while more items are in flight than there are
    threads (the newest batch is never waited for: with ``--batch 1`` a case is written on each thread while the
    next ones are sampled; with batches as large as the threads, one batch is written beside the next one's
    sampling). Waiting for a batch calls ``on_done`` once per item of it that succeeded, in the batch's order, and
    raises the first error of it as it was raised (later ones logged). Leaving the block waits for the rest.
    Leaving it by an error (the caller's, or a write's raised by ``submit``) still lets every queued item finish,
    each a whole case written atomically, so no batch already submitted is lost; Ctrl-C waits for them too. Errors
    of items nobody waited for are logged, not raised: the error that ended the block is the one raised.
    ``threads`` <= 1 writes in this thread, in ``submit``.
    """

    def __init__(self, fn: Callable[..., Any], *, threads: int | None = None,
                 on_done: Callable[[], Any] | None = None) -> None:
        self.fn, self.on_done = fn, on_done
        self.threads = min(WRITER_THREADS, usable_cores()) if threads is None else int(threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[list[Future[Any]]] = collections.deque()  # batches, oldest first

    def __enter__(self) -> BatchWriter:
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="medidiff-writer")
        return self

    def submit(self, batch: Iterable[Sequence[Any]]) -> None:
        if self._pool is None:
            for item in batch:
                self.fn(*item)
                self._done()
            return
        self._pending.append([self._pool.submit(self.fn, *item) for item in batch])
        # bounded by items, not batches: the volumes held in memory are at most a thread's case each + a batch
        while len(self._pending) > 1 and sum(map(len, self._pending)) > self.threads:
            self._finish(self._pending.popleft())

    def _done(self) -> None:
        if self.on_done is not None:
            self.on_done()

    def _finish(self, futures: list[Future[Any]]) -> None:
        """Wait for ``futures`` in order: on_done for each that succeeded, the first error raised (as the item
        raised it) after all finished, any later one logged."""
        first: BaseException | None = None
        for future in futures:
            if (err := future.exception()) is None:
                self._done()
            elif first is None:
                first = err
            else:
                log.warning("another write of the batch also failed: %s: %s", type(err).__name__, err)
        if first is not None:
            raise first

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            while exc_type is None and self._pending:
                self._finish(self._pending.popleft())
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # queued items finish: whole cases
                for future in itertools.chain.from_iterable(self._pending):
                    if not future.cancelled() and (err := future.exception()) is not None:
                        log.warning("a queued write also failed: %s: %s", type(err).__name__, err)
