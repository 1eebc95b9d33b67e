"""medidiff.utils.threads.thread_map: map on threads, in order, stopping at the first error."""

from __future__ import annotations

import threading
import time

import pytest

from medidiff.utils.threads import MAX_THREADS, default_threads, thread_map


def test_results_keep_the_items_order_whatever_finishes_first():
    def slow_first(i: int) -> tuple[int, int]:
        time.sleep(0.002 * (8 - i))  # early items finish last
        return i, threading.get_ident()

    with thread_map(slow_first, range(8), threads=4) as results:
        out = list(results)
    assert [i for i, _ in out] == list(range(8))
    assert len({t for _, t in out}) > 1, "4 threads use more than one"
    with thread_map(slow_first, range(4), threads=1) as results:
        assert {t for _, t in results} == {threading.get_ident()}
    with thread_map(lambda i: i * i, [], threads=3) as results:
        assert list(results) == []


def test_the_first_error_is_the_items_own_and_the_rest_never_start():
    started: list[int] = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("c1.nii.gz: not a readable NIfTI")
        gate.wait(2.0)  # item 0 holds the error back until the gate opens
        time.sleep(0.05)  # every item takes a while
        return i

    threading.Timer(0.3, gate.set).start()
    with pytest.raises(ValueError, match=r"^c1.nii.gz: not a readable NIfTI$"):
        with thread_map(work, range(40), threads=2) as results:
            list(results)
    assert len(started) < 40, "items not started when the error came are not run"


def test_the_callers_own_error_stops_the_rest_and_torch_threads_come_back():
    import torch

    started: list[int] = []
    before = torch.get_num_threads()

    def work(i: int) -> int:
        started.append(i)
        time.sleep(0.05)
        return i

    with pytest.raises(KeyError):
        with thread_map(work, range(40), threads=2) as results:
            assert torch.get_num_threads() == max(1, before // 2)  # shared among the threads meanwhile
            for i in results:
                if i == 1:
                    raise KeyError("the caller's own")
    assert len(started) < 40 and torch.get_num_threads() == before


def test_default_is_the_usable_cores_bounded():
    assert 1 <= default_threads() <= MAX_THREADS


def test_batch_writer_writes_each_batch_beside_the_next_and_reports_in_order():
    """Items of a batch run on worker threads, finish in any order, and are reported (on_done) in the
    batch's order once a later submit puts more items in flight than there are threads, or the block ends;
    threads=1 writes in submit."""
    from medidiff.utils.threads import BatchWriter

    for threads in (1, 3):
        written, reported = [], []

        def write(i: int, delay: float) -> None:
            time.sleep(delay)
            written.append(i)

        with BatchWriter(write, threads=threads, on_done=lambda: reported.append(len(reported))) as writer:
            writer.submit([(0, 0.3), (1, 0.0), (2, 0.02)])
            if threads > 1:
                assert len(reported) == 0  # the first batch is still in flight: the caller goes on
            writer.submit([(3, 0.0)])  # queued, then the batch before is waited for
            assert {0, 1, 2} <= set(written) and len(reported) == (3 if threads > 1 else 4)
        assert sorted(written) == [0, 1, 2, 3] and reported == [0, 1, 2, 3]
        if threads > 1:
            assert written[-1] == 0  # they ran side by side: the slow one finished last


def test_batch_writer_keeps_every_thread_writing_when_batches_are_smaller_than_the_threads():
    """With ``--batch 1`` (generate's default) a case is written on each thread while the next are sampled: the
    oldest batches are waited for only once more items are in flight than there are threads."""
    from medidiff.utils.threads import BatchWriter

    running, most, reported = [0], [0], []
    lock = threading.Lock()

    def write(i: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1

    with BatchWriter(write, threads=3, on_done=lambda: reported.append(1)) as writer:
        for i in range(3):
            writer.submit([(i,)])
        assert reported == []  # three in flight on three threads: nothing waited for yet
        writer.submit([(3,)])  # the fourth: the oldest is waited for
        assert len(reported) == 1
    assert len(reported) == 4 and most[0] == 3


def test_batch_writer_raises_the_items_own_error_and_finishes_what_was_queued(caplog):
    from medidiff.utils.threads import BatchWriter

    written, done = [], []

    def write(i: int) -> None:
        if i in (1, 6):
            raise OSError(f"disk full at {i}")
        time.sleep(0.01)
        written.append(i)

    with pytest.raises(OSError, match="disk full at 1"), caplog.at_level("WARNING"):
        with BatchWriter(write, threads=2, on_done=lambda: done.append(1)) as writer:
            writer.submit([(0,), (1,), (6,), (2,)])
            writer.submit([(3,)])  # raises the batch before's first error, with its own batch queued
    assert sorted(written) == [0, 2, 3]  # the error's batch mates and the batch after finished: whole cases
    assert len(done) == 2 and "disk full at 6" in caplog.text  # the two that succeeded; the second error logged
    caplog.clear()
    # the caller's own error wins; what was queued is still written
    written.clear()
    with pytest.raises(KeyError):
        with BatchWriter(write, threads=2) as writer:
            writer.submit([(4,), (5,)])
            raise KeyError("sampling failed")
    assert sorted(written) == [4, 5]
    # a queued item's error after the caller's own is logged, not raised in its place
    with pytest.raises(KeyError), caplog.at_level("WARNING"):
        with BatchWriter(write, threads=2) as writer:
            writer.submit([(1,)])
            raise KeyError("sampling failed")
    assert "disk full at 1" in caplog.text
