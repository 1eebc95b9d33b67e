"""eval.data.load_cases: threads change nothing but the time (order, values, errors)."""

from __future__ import annotations

import time

import pytest
import torch

from medidiff.eval.data import load_cases


def _items(n: int) -> list[dict]:
    return [{"case_id": f"c{i}", "i": i, "provenance": {"source": i}} for i in range(n)]


def _transform(d: dict) -> dict:
    assert "provenance" not in d, "the pipeline sees the item without its provenance"
    i = d["i"]
    if i < 0:
        raise ValueError(f"c{i}.nii.gz: not a readable NIfTI")
    time.sleep(0.002 * (8 - i))  # early cases finish last: the order must not come from finishing
    return {"image": torch.full((2, 3, 3, 3), float(i), dtype=torch.float64), "label": torch.full((3, 3, 3, 3), i % 2)}


def test_threads_give_the_same_cases_in_the_same_order():
    one = load_cases("x", _items(8), _transform, with_label=True, progress=False, workers=0)
    many = load_cases("x", _items(8), _transform, with_label=True, progress=False, workers=4)
    assert torch.equal(one.images, many.images) and torch.equal(one.labels, many.labels)
    assert many.images.dtype == torch.float32 and many.labels.dtype == torch.bool
    assert many.case_ids == [f"c{i}" for i in range(8)] == one.case_ids
    assert many.provenance == [{"source": i} for i in range(8)]
    assert many.images[:, 0, 0, 0, 0].tolist() == list(range(8))


def test_worker_processes_give_the_same_cases_in_the_same_order(monkeypatch):
    """On hosts of 8+ cores the cases decode in worker processes: nothing changes but the time."""
    from medidiff.utils import threads as threads_module

    one = load_cases("x", _items(8), _transform, with_label=True, progress=False, workers=0)
    monkeypatch.setattr(threads_module, "decode_processes", lambda n, threads: 2)
    forked = load_cases("x", _items(8), _transform, with_label=True, progress=False, workers=2)
    assert torch.equal(one.images, forked.images) and torch.equal(one.labels, forked.labels)
    assert forked.case_ids == one.case_ids and forked.provenance == one.provenance


def test_a_bad_case_raises_its_own_error():
    items = _items(6)
    items[3]["i"] = -3
    with pytest.raises(ValueError, match=r"^c-3.nii.gz: not a readable NIfTI$"):
        load_cases("x", items, _transform, with_label=True, progress=False, workers=3)
    with pytest.raises(ValueError, match="no cases"):
        load_cases("empty", [], _transform, with_label=False, workers=2)
