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
