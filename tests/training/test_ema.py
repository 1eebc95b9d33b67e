"""EMA: warm-up formulas, the closed-form average, float32 shadow, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medidiff.training.ema import EMA, EMAConfig


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_warmup_formulas():
    ema = EMA(_net(), EMAConfig(max_decay=0.999, warmup="hyperbolic"))
    assert ema.decay(0) == pytest.approx(0.1)
    assert ema.decay(90) == pytest.approx(91 / 100)
    assert ema.decay(10**7) == 0.999
    power = EMA(_net(), EMAConfig(max_decay=0.9999, warmup="power", power=0.75))
    assert power.decay(10_000 - 1) == pytest.approx(1 - 10_000 ** -0.75)
    assert power.decay(0) == 0.0  # (1 + 0)^-p = 1: the first update copies the weights
    assert EMA(_net(), EMAConfig(warmup="none", max_decay=0.9)).decay(0) == 0.9
    steps = [power.decay(s) for s in range(0, 100_000, 997)]
    assert all(b >= a for a, b in zip(steps, steps[1:]))


def test_update_matches_closed_form():
    """Constant weights p from shadow s0: shadow_n = p + prod_k decay_k (s0 - p)."""
    net = _net()
    ema = EMA(net.parameters(), EMAConfig(warmup="hyperbolic"))
    s0 = [s.clone() for s in ema.shadow]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    decays = [ema.update(net.parameters()) for _ in range(20)]  # step = number of past updates
    assert decays == [ema.decay(k) for k in range(20)]
    factor = math.prod(decays)
    for s, s_init, p in zip(ema.shadow, s0, net.parameters()):
        assert torch.allclose(s, p + factor * (s_init - p), atol=1e-6)


def test_float32_shadow_accumulates_small_bf16_updates():
    p = nn.Parameter(torch.zeros(8, dtype=torch.bfloat16))
    ema = EMA([p], EMAConfig(warmup="none", max_decay=0.9999))
    assert ema.shadow[0].dtype == torch.float32
    with torch.no_grad():
        p.fill_(1.0)
    for _ in range(100):
        ema.update([p])
    expected = 1 - 0.9999**100  # ~0.00995, which bf16 could not accumulate update by update
    assert torch.allclose(ema.shadow[0], torch.full((8,), expected), rtol=1e-4)


def test_copy_store_restore_and_generator_iterables():
    net = _net()
    ema = EMA(p for p in net.parameters())  # any iterable, e.g. gathered ZeRO-3 parameters
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    trained = [p.detach().clone() for p in net.parameters()]
    ema.store(net)
    ema.copy_to(net)
    assert all(torch.equal(p, s) for p, s in zip(net.parameters(), ema.shadow))
    ema.restore(net)
    assert all(torch.equal(p, t) for p, t in zip(net.parameters(), trained))
    with pytest.raises(RuntimeError, match="store"):
        ema.restore(net)
    with pytest.raises(ValueError, match="gather"):
        ema.update(list(net.parameters())[:2])
    with pytest.raises(ValueError, match="placeholder"):
        ema.update([torch.empty(0) for _ in net.parameters()])


def test_state_dict_round_trip_resumes_identically():
    net = _net()
    a = EMA(net, EMAConfig(warmup="power", power=0.75))
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1)
        a.update(net)
    b = EMA(_net())  # different init and config: everything comes from the checkpoint
    b.load_state_dict(a.state_dict())
    assert b.num_updates == 5 and b.config == a.config
    assert all(torch.equal(x, y) for x, y in zip(a.shadow, b.shadow))
    assert a.update(net) == b.update(net)
    assert all(torch.equal(x, y) for x, y in zip(a.shadow, b.shadow))
    with pytest.raises(ValueError, match="architecture"):
        EMA(nn.Linear(3, 4)).load_state_dict(a.state_dict())
