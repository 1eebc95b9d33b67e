"""Shared fixtures: keep CPU tests small and deterministic."""

from __future__ import annotations

import os

import pytest

# One OpenMP thread: on a shared 2-core machine two threads per process thrash (a tiny SegResNet
# step went from 0.13 s to 12-21 s when the other core was busy).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def both_cores():
    """torch's intra-op threads on both cores for one single-process test that trains its own model with no
    loader workers or subprocesses: CI's 2-core machine runs one test at a time, so the other core would idle
    (the suite's three learning tests: 88.6 / 59.6 / 65.9 s on one thread, 50.8 / 48.0 / 41.8 s on two). Only for
    such tests, and only while nothing else runs on the machine: two threads thrash when the other core is busy
    (the note above)."""
    import torch

    from medidiff.utils.threads import usable_cores

    before = torch.get_num_threads()
    torch.set_num_threads(min(2, usable_cores()))
    yield
    torch.set_num_threads(before)


# pyproject's per-test timeout (900 s) is for the default run; the slow and GPU tests run whole benchmark
# jobs (quality_scale four times over, torchrun launches, sbatch waits) and get an hour.
LONG_TEST_TIMEOUT_S = 3600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.timeout(LONG_TEST_TIMEOUT_S))


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    yield
