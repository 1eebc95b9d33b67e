"""eval.data.load_cases: threads change nothing but the time (order, values, errors)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from medidiff.eval.data import default_workers, load_cases


def _items(n: int) -> list[dict]:
    return [{"case_id": f"c{i}", "i": i, "provenance": {"source": i}} for i in range(n)]


def _transform(seen: list[int]):
    def tf(d: dict) -> dict:
        assert "provenance" not in d, "the pipeline sees the item without its provenance"
        i = d["i"]
        time.sleep(0.002 * (8 - i))  # early cases finish last: the order must not come from finishing
        seen.append(threading.get_ident())
        return {"image": torch.full((2, 3, 3, 3), float(i), dtype=torch.float64), "label": torch.full((3, 3, 3, 3), i % 2)}
    return tf


def test_threads_give_the_same_cases_in_the_same_order():
    one_seen, many_seen = [], []
    one = load_cases("x", _items(8), _transform(one_seen), with_label=True, progress=False, workers=0)
    many = load_cases("x", _items(8), _transform(many_seen), with_label=True, progress=False, workers=4)
    assert len(set(one_seen)) == 1 and len(set(many_seen)) > 1, "workers=0 loads in this thread, 4 in several"
    assert torch.equal(one.images, many.images) and torch.equal(one.labels, many.labels)
    assert many.images.dtype == torch.float32 and many.labels.dtype == torch.bool
    assert many.case_ids == [f"c{i}" for i in range(8)] == one.case_ids
    assert many.provenance == [{"source": i} for i in range(8)]
    assert many.images[:, 0, 0, 0, 0].tolist() == list(range(8))


def test_a_failing_case_raises_its_own_error_and_stops_the_rest():
    started: list[int] = []
    gate = threading.Event()

    def tf(d: dict) -> dict:
        started.append(d["i"])
        if d["i"] == 1:
            raise ValueError("c1.nii.gz: not a readable NIfTI")
        gate.wait(2.0)  # case 0 holds the error back until the gate opens
        time.sleep(0.05)  # every case takes a while
        return {"image": torch.zeros(1, 2, 2, 2)}

    threading.Timer(0.3, gate.set).start()
    with pytest.raises(ValueError, match=r"^c1.nii.gz: not a readable NIfTI$"):
        load_cases("x", _items(40), tf, with_label=False, progress=False, workers=2)
    assert len(started) < 40, "cases not started when the error came are not loaded"


def test_default_workers_is_bounded():
    assert 1 <= default_workers() <= 8
    with pytest.raises(ValueError, match="no cases"):
        load_cases("empty", [], _transform([]), with_label=False, workers=2)
