"""Shared fixtures: keep CPU tests small and deterministic."""

from __future__ import annotations

import os

import pytest

# One OpenMP thread: on a shared 2-core machine two threads per process thrash (a tiny SegResNet
# step went from 0.13 s to 12-21 s when the other core was busy).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    yield
