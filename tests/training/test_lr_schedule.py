"""The learning-rate schedules (``train.lr_schedule``): the factor of ``train.lr`` at each optimizer step."""
import math

import pytest

from medidiff.config import load_config
from medidiff.training.config import TrainConfig
from medidiff.training.engine import lr_lambda


def _factors(**kw) -> list[float]:
    cfg = TrainConfig(**kw)
    f = lr_lambda(cfg)
    return [f(s) for s in range(cfg.max_steps)]


def test_every_schedule_warms_up_linearly_then_constant_holds():
    for name in ("constant", "cosine", "wsd"):
        f = _factors(max_steps=100, warmup_steps=10, lr_schedule=name)
        assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)]), name
    assert set(_factors(max_steps=100, warmup_steps=10, lr_schedule="constant")[10:]) == {1.0}


def test_cosine_decays_from_the_warm_up_to_min_lr_ratio():
    f = _factors(max_steps=110, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert f[10] == 1.0 and f[60] == pytest.approx(0.1 + 0.9 * 0.5)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # never rises
    assert f[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_wsd_holds_the_rate_then_decays_linearly_over_the_last_fraction():
    f = _factors(max_steps=100, warmup_steps=10, lr_schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0)
    assert set(f[10:80]) == {1.0}  # stable until the last 20 steps
    decay = f[80:]
    assert decay == pytest.approx([1 - k / 20 for k in range(20)])  # linear toward 0, reached at max_steps
    # with a floor, and a decay longer than the steps after the warm-up: it starts when the warm-up ends
    g = _factors(max_steps=100, warmup_steps=30, lr_schedule="wsd", decay_fraction=0.9, min_lr_ratio=0.2)
    assert g[30] == 1.0 and g[31] < 1.0
    assert g[-1] == pytest.approx(1 - 0.8 * 69 / 70) and min(g[30:]) > 0.2


def test_wsd_never_rises_and_decays_even_when_short_or_without_warm_up():
    for steps, warmup, frac in ((2, 0, 0.2), (5, 0, 1.0), (50, 0, 0.5), (40, 3, 0.25), (10, 8, 0.2)):
        f = _factors(max_steps=steps, warmup_steps=warmup, lr_schedule="wsd", decay_fraction=frac, min_lr_ratio=0.1)
        assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1:])), (steps, warmup, frac)
        assert f[-1] < 1.0 and min(f) >= 0.1, (steps, warmup, frac)  # some decay, never below the floor
    f = _factors(max_steps=5, warmup_steps=0, lr_schedule="wsd", decay_fraction=1.0)
    assert f == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])  # the whole run decays from the first step
    assert lr_lambda(TrainConfig(max_steps=5, warmup_steps=0, lr_schedule="wsd", decay_fraction=1.0,
                                 min_lr_ratio=0.1))(5) == pytest.approx(0.1)  # min_lr_ratio at max_steps


def test_bad_decay_fraction_is_refused_by_name():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="decay_fraction must be in"):
            TrainConfig(decay_fraction=bad)
    with pytest.raises(Exception, match="lr_schedule"):
        load_config(None, ["train.lr_schedule=linear"])
    assert load_config(None, ["train.lr_schedule=wsd", "train.decay_fraction=0.3"]).train.decay_fraction == 0.3
