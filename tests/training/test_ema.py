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


def _pieces_of(params, cuts):
    """Each parameter cut at ``cuts[i]`` into two pieces (as two ranks would hold them)."""
    first, second = [], []
    for i, (p, c) in enumerate(zip(params, cuts)):
        flat = p.detach().reshape(-1)
        first.append((i, 0, flat[:c]))
        second.append((i, c, flat[c:]))
    return first, second


def test_pieces_average_like_whole_parameters_once_gathered():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(2, 3, 3), nn.Conv3d(3, 2, 1))
    params = list(net.parameters())
    whole, pieces = EMA(params, EMAConfig(max_decay=0.9)), EMA(params, EMAConfig(max_decay=0.9))
    cuts = [p.numel() // 3 for p in params]
    for _ in range(3):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        whole.update(params)
        first, second = _pieces_of(params, cuts)
        pieces.update_pieces(first + second)  # one process holding every piece
    with pytest.raises(RuntimeError, match="without gather_pieces"):
        _ = pieces.shadow  # stale until gathered
    pieces.gather_pieces()
    assert pieces.num_updates == whole.num_updates == 3
    for a, b in zip(pieces.shadow, whole.shadow):
        assert torch.equal(a, b)


def test_pieces_that_miss_part_of_a_parameter_are_refused_at_the_gather():
    params = list(nn.Conv3d(2, 3, 3).parameters())
    ema = EMA(params)
    first, _ = _pieces_of(params, [p.numel() // 2 for p in params])
    ema.update_pieces(first)  # half of each parameter and no process group for the rest
    with pytest.raises(RuntimeError, match="pieces hold"):
        ema.gather_pieces()
    with pytest.raises(ValueError, match="changed layout"):
        ema.update_pieces(first[:1])
    with pytest.raises(ValueError, match="outside"):
        EMA(params).update_pieces([(0, params[0].numel(), params[0].reshape(-1)[:1])])


def test_loading_a_state_recuts_the_pieces_from_it():
    params = list(nn.Conv3d(1, 2, 3).parameters())
    ema = EMA(params, EMAConfig(max_decay=0.5, warmup="none"))
    first, second = _pieces_of(params, [1 for _ in params])
    ema.update_pieces(first + second)
    ema.gather_pieces()
    state = ema.state_dict()
    other = EMA([torch.zeros_like(p) for p in params], EMAConfig(max_decay=0.5, warmup="none"))
    other.update_pieces([(i, s, torch.zeros_like(v)) for i, s, v in first + second])
    other.load_state_dict(state)  # as a resume does: the loaded shadow, not the old pieces
    other.update_pieces(first + second)
    other.gather_pieces()
    ema.update_pieces(first + second)
    ema.gather_pieces()
    for a, b in zip(other.shadow, ema.shadow):
        assert torch.equal(a, b)
