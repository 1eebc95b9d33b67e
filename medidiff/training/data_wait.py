"""Is the loader limiting the run? The share of wall time the training loop spends waiting in
``next(it)`` for its next batch.

Why this signal: the loop asks for a batch, then launches that batch's GPU work without waiting for
it (losses are read at log steps only). When the GPU (or the host's own launching) is the limit,
the workers fill the loader's prefetch queue while the step runs, and ``next`` returns at once.
When the loader is the limit, the queue is empty and ``next`` blocks, so in steady state the wait
share is close to zero unless the loader is too slow, and it says by how much (a share w means a
loader that kept up would make the loop about 1 / (1 - w) times faster, at most). It costs two
clock reads a batch and no device synchronisation. The first batch (worker start-up, cache fill)
is not counted.

:class:`DataWait` wraps the loader's iterator; the loop's log line reads :meth:`DataWait.lap`. It
logs a warning, on its own, when a window of batches was loader-bound, so a run says so in its log
even where the loop does not record the share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DataWait", "LOADER_BOUND_SHARE"]

# Above this share of wall time spent waiting for batches, a window counts as loader-bound.
LOADER_BOUND_SHARE = 0.1


class DataWait:
    """``it = DataWait(iter(loader))``: times every ``next(it)``; other attributes pass through to the
    wrapped iterator (``_shutdown_workers`` included).

    ``warn_every`` batches (and at least ``min_seconds`` of wall time) make a window; a window whose
    wait share exceeds ``bound_share`` logs one warning naming the share and what to change, unless
    ``warn`` is False: where ``next`` launches device work (the training set held on the device), a
    host ahead of the GPU blocks there on the full launch queue, and the wait says the GPU is the limit.
    """

    def __init__(self, it: Iterator[Any], *, bound_share: float = LOADER_BOUND_SHARE, warn_every: int = 50,
                 min_seconds: float = 10.0, hint: str = "raise data.num_workers or use data.cache: memory",
                 warn: bool = True) -> None:
        self._it = it
        self.bound_share, self.warn_every, self.min_seconds, self.hint = bound_share, warn_every, min_seconds, hint
        self.warn = warn
        self._started: float | None = None  # set when the first batch arrives
        self._lap_start = self._window_start = 0.0
        self._lap_wait = self._window_wait = 0.0
        self._window_batches = 0
        self.warnings = 0

    def __iter__(self) -> DataWait:
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        batch = next(self._it)
        now = time.perf_counter()
        if self._started is None:  # start-up is not a steady-state wait
            self._started = self._lap_start = self._window_start = now
            return batch
        self._lap_wait += now - t0
        self._window_wait += now - t0
        self._window_batches += 1
        if self._window_batches >= self.warn_every and now - self._window_start >= self.min_seconds:
            share = self._window_wait / max(now - self._window_start, 1e-9)
            if self.warn and share > self.bound_share:
                self.warnings += 1
                log.warning("loader-bound: %.0f%% of the last %d batches' wall time (%.1f s) went to waiting for the "
                            "next batch; %s", 100 * share, self._window_batches, now - self._window_start, self.hint)
            self._window_start, self._window_wait, self._window_batches = now, 0.0, 0
        return batch

    def lap(self) -> dict[str, float]:
        """``{"data_wait_share": w}`` since the previous lap (or the first batch); empty before it."""
        if self._started is None:
            return {}
        now = time.perf_counter()
        share = self._lap_wait / max(now - self._lap_start, 1e-9)
        self._lap_start, self._lap_wait = now, 0.0
        return {"data_wait_share": share}

    def __getattr__(self, name: str) -> Any:  # only for names DataWait itself lacks
        if name == "_it":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self._it, name)
