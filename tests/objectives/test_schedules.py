"""Schedule invariants against the papers' closed forms (and MONAI's beta definitions)."""

from __future__ import annotations

import math

import pytest
import torch

from medidiff.config import ConfigError, from_dict
from medidiff.objectives import DDPMObjective, ObjectiveConfig
from medidiff.objectives.schedules import (
    alphas_cumprod_from_betas,
    cosine_betas,
    logit_normal,
    make_betas,
    rescale_zero_terminal_snr,
    resolution_shift,
    shift_time,
)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled_linear"])
def test_alpha_bar_strictly_decreasing_in_unit_interval(schedule):
    ab = alphas_cumprod_from_betas(make_betas(schedule, 1000))
    assert ab.shape == (1000,)
    assert ((ab > 0) & (ab < 1)).all()
    assert (ab[1:] < ab[:-1]).all()


def test_linear_betas_ddpm_paper():
    betas = make_betas("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    # alpha_bar_T = prod(1 - beta) for the DDPM schedule is ~4.04e-5 (terminal SNR not zero)
    assert alphas_cumprod_from_betas(betas)[-1].item() == pytest.approx(4.036e-5, rel=1e-3)


def test_scaled_linear_betas_sqrt_linear():
    betas = make_betas("scaled_linear", 1000)
    assert betas[0].item() == pytest.approx(0.00085) and betas[-1].item() == pytest.approx(0.012)
    second_diff = betas.sqrt().diff().diff()
    assert second_diff.abs().max() < 1e-12


def test_betas_match_monai_schedulers():
    from monai.networks.schedulers import DDPMScheduler

    for schedule, monai_name in [("linear", "linear_beta"), ("scaled_linear", "scaled_linear_beta")]:
        lo, hi = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}[schedule]
        ours = make_betas(schedule, 1000, lo, hi).float()
        theirs = DDPMScheduler(num_train_timesteps=1000, schedule=monai_name, beta_start=lo, beta_end=hi).betas
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-8)


def test_cosine_schedule_closed_form():
    T, s = 1000, 0.008
    ab = alphas_cumprod_from_betas(cosine_betas(T))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    # alpha_bar at step t (0-based) is f(t + 1) / f(0) wherever beta is not clipped (arXiv:2102.09672 eq. 17)
    for t in [0, 10, 500, 900]:
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert cosine_betas(T)[0].item() == pytest.approx(1 - f(1) / f(0))
    assert cosine_betas(T).max().item() == pytest.approx(0.999)  # clipped near t = T
    assert ab[-1].item() < 1e-6


def test_bad_schedules_are_errors():
    with pytest.raises(ValueError, match="cosine"):
        make_betas("cosine", 1000, 1e-4, 0.02)
    with pytest.raises(ValueError, match="beta_start"):
        make_betas("linear", 1000, 0.02, 1e-4)
    with pytest.raises(ConfigError, match="cosine"):
        from_dict(ObjectiveConfig, {"schedule": "cosine", "beta_start": 1e-4})
    with pytest.raises(ConfigError, match="did you mean 'epsilon'"):
        from_dict(ObjectiveConfig, {"prediction": "eps"})
    cfg = from_dict(ObjectiveConfig, {"type": "flow", "loss": "l1", "channel_weights": [1, 2]})
    assert cfg.channel_weights == [1.0, 2.0]


def test_net_time_inverts_alpha_bar():
    obj = DDPMObjective()
    steps = torch.arange(1000, dtype=torch.float64)
    assert torch.allclose(obj.net_time(obj.alphas_cumprod), steps, atol=1e-6)
    assert torch.allclose(obj.alpha_bar(steps), obj.alphas_cumprod, rtol=1e-12)
    frac = torch.rand(100, dtype=torch.float64) * 999
    assert torch.allclose(obj.net_time(obj.alpha_bar(frac)), frac, atol=1e-6)


@pytest.mark.parametrize("spacing", ["trailing", "linspace", "leading"])
def test_ddpm_grid(spacing):
    obj = DDPMObjective()
    ts = obj.timesteps(50, spacing=spacing)
    assert ts.shape == (51,) and ts[-1] == 1.0 and (ts.diff() > 0).all()
    steps = obj.net_time(ts[:-1]).round()
    assert set(steps.tolist()) <= set(range(1000)) and len(set(steps.tolist())) == 50
    if spacing == "trailing":  # starts from the noisiest trained level (arXiv:2305.08891)
        assert steps[0] == 999
    with pytest.raises(ValueError, match="num_steps"):
        obj.timesteps(1001)


def test_logit_normal_in_open_unit_interval():
    g = torch.Generator().manual_seed(0)
    t = logit_normal(20_000, mean=0.5, std=1.0, generator=g)
    assert ((t > 0) & (t < 1)).all()
    z = torch.log(t / (1 - t))
    assert z.mean().item() == pytest.approx(0.5, abs=0.03) and z.std().item() == pytest.approx(1.0, abs=0.03)


def test_time_shift_invariants():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert resolution_shift(32**3) == 1.0
    assert torch.equal(shift_time(t, 1.0), t)  # identity at the base resolution
    s = resolution_shift(64 * 64 * 48)
    assert s == pytest.approx((64 * 64 * 48 / 32**3) ** 0.5)
    shifted = shift_time(t, s)
    assert (shifted.diff() > 0).all() and shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > t[1:-1]).all()  # bigger volumes spend more time near noise
    # volumes smaller than the base (s < 1) keep the end points exactly (1 + 2e-16 broke sampling)
    for numel in (16**3, 20 * 24 * 20):
        small = shift_time(t, resolution_shift(numel))
        assert small[0] == 0 and small[-1] == 1 and (small.diff() > 0).all()
    # power 1/3 reproduces MONAI's RFlowScheduler (MAISI-v2) timestep transform
    from monai.networks.schedulers.rectified_flow import timestep_transform

    numel = 64 * 64 * 48
    ref = timestep_transform(t * 1000, numel, base_img_size_numel=32**3, num_train_timesteps=1000, spatial_dim=3) / 1000
    assert torch.allclose(shift_time(t, resolution_shift(numel, power=1 / 3)), ref.double(), atol=1e-6)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled_linear"])
def test_zero_terminal_snr_rescale_closed_form(schedule):
    """arXiv:2305.08891 alg. 1: sqrt(alpha_bar) shifted and scaled so that it keeps its first value
    and ends at exactly 0; it stays an affine function of the original sqrt(alpha_bar)."""
    old = alphas_cumprod_from_betas(make_betas(schedule, 1000)).sqrt()
    betas = make_betas(schedule, 1000, zero_terminal_snr=True)
    new = alphas_cumprod_from_betas(betas).sqrt()
    assert betas[-1].item() == 1.0 and ((betas > 0) & (betas <= 1)).all()
    assert new[-1].item() == 0.0 and new[0].item() == pytest.approx(old[0].item(), rel=1e-12)
    expected = (old - old[-1]) * old[0] / (old[0] - old[-1])
    assert torch.allclose(new, expected, atol=1e-12)
    assert (new[1:] < new[:-1]).all()
    assert rescale_zero_terminal_snr(make_betas(schedule, 1000)).equal(betas)


def test_zero_terminal_snr_objective_maps_times_and_refuses_epsilon():
    obj = DDPMObjective(ObjectiveConfig(prediction="v", zero_terminal_snr=True))
    assert obj.alphas_cumprod[-1] == 0.0
    steps = torch.arange(1000, dtype=torch.float64)
    assert torch.allclose(obj.net_time(obj.alphas_cumprod), steps, atol=1e-6)  # alpha_bar 0 -> step 999
    assert obj.alpha_bar(torch.tensor([999.0])).item() < 1e-300
    grid = obj.timesteps(50)
    assert grid[0] == 0.0 and (grid.diff() > 0).all()  # sampling starts at pure noise
    with pytest.raises(ConfigError, match="set prediction: v"):
        from_dict(ObjectiveConfig, {"zero_terminal_snr": True})
    with pytest.raises(ConfigError, match="flow"):
        from_dict(ObjectiveConfig, {"type": "flow", "zero_terminal_snr": True})
    with pytest.raises(ConfigError, match="min_snr_gamma"):
        from_dict(ObjectiveConfig, {"prediction": "v", "zero_terminal_snr": True, "min_snr_gamma": 5.0})
