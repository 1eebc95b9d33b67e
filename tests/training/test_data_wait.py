"""DataWait: the share of wall time spent in next(it) says whether the loader limits the run."""

from __future__ import annotations

import logging
import time

from medidiff.training.data_wait import DataWait


def _items(delay: float, n: int):
    for i in range(n):
        time.sleep(delay)
        yield i


def test_a_slow_loader_is_reported_and_a_fast_one_is_not(caplog):
    caplog.set_level(logging.WARNING, logger="medidiff.training.data_wait")
    slow = DataWait(_items(0.02, 12), warn_every=5, min_seconds=0.0)
    for _ in slow:
        time.sleep(0.002)  # the "step": much shorter than a batch's load
    assert slow.warnings == 2 and "loader-bound" in caplog.text and "data.num_workers" in caplog.text
    caplog.clear()
    fast = DataWait(_items(0.0, 12), warn_every=5, min_seconds=0.0)
    for _ in fast:
        time.sleep(0.02)
    assert fast.warnings == 0 and "loader-bound" not in caplog.text


def test_lap_gives_the_wait_share_since_the_last_lap_and_skips_start_up():
    it = DataWait(_items(0.03, 6), warn_every=10**6)
    assert it.lap() == {}  # nothing yet
    next(it)  # start-up: not counted
    for _ in range(3):
        next(it)
    share = it.lap()["data_wait_share"]
    assert 0.8 < share <= 1.0  # nothing but waiting since the first batch
    time.sleep(0.03)
    assert it.lap()["data_wait_share"] < 0.2  # a lap with no waiting


def test_other_attributes_reach_the_wrapped_iterator():
    class Loader:
        shut = False

        def __next__(self):
            return 1

        def _shutdown_workers(self):
            self.shut = True

    inner = Loader()
    wrapped = DataWait(inner)
    wrapped._shutdown_workers()  # what fit's cleanup calls
    assert inner.shut and next(wrapped) == 1


def test_without_warn_the_share_is_recorded_but_never_called_loader_bound(caplog):
    # the training set held on the device: next() launches a gather, and a host ahead of the GPU waits there
    caplog.set_level(logging.WARNING, logger="medidiff.training.data_wait")
    it = DataWait(_items(0.02, 12), warn_every=5, min_seconds=0.0, warn=False)
    next(it)
    for _ in range(5):
        next(it)
    assert it.lap()["data_wait_share"] > 0.8
    for _ in it:
        pass
    assert it.warnings == 0 and "loader-bound" not in caplog.text
