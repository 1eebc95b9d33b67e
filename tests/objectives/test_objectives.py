"""Objectives: exact parameterisation conversions, loss weighting, and the closed-form
optimal loss for Gaussian data (the oracle network must reach it; a wrong network must not)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from medidiff.errors import MedidiffError
from medidiff.objectives import (
    DDPMObjective,
    FlowMatchingObjective,
    ObjectiveConfig,
    build_objective,
    convert_prediction,
    min_snr_weight,
)
from medidiff.utils.tensor import append_dims

MU = torch.tensor([0.5, -1.0, 0.0])
S = torch.tensor([0.3, 1.0, 2.0])


def _like(v, x):
    return v.to(x).reshape(1, -1, *([1] * (x.ndim - 2)))


def gaussian_x0(x, a, b):
    mu, s2 = _like(MU, x), _like(S, x) ** 2
    a, b = append_dims(a, x.ndim).to(x), append_dims(b, x.ndim).to(x)
    return mu + a * s2 / (a**2 * s2 + b**2) * (x - a * mu)


class Oracle(nn.Module):
    """E[x0 | x_t] for Gaussian data, output in the objective's parameterisation; ``bias`` makes it wrong."""

    def __init__(self, obj, bias: float = 0.0):
        super().__init__()
        self.obj, self.bias = obj, bias

    def forward(self, x, t, **cond):
        if self.obj.kind == "ddpm":
            ab = self.obj.alpha_bar(t)
            x0 = gaussian_x0(x, ab.sqrt(), (1 - ab).sqrt()) + self.bias
            return convert_prediction(x0, x, ab, "x0", self.obj.prediction)
        tf = t.double() / self.obj.num_train_steps
        x0 = gaussian_x0(x, 1 - tf, tf) + self.bias
        if self.obj.config.flow_target == "x0":
            sd = self.obj.config.x0_skip_sigma
            if sd:  # EDM's preconditioning: the net outputs F with x0 = c_skip x + c_out F
                a, b = append_dims(1 - tf, x.ndim).to(x), append_dims(tf, x.ndim).to(x)
                c_skip, c_out = a * sd**2 / (a**2 * sd**2 + b**2), b * sd / (a**2 * sd**2 + b**2).sqrt()
                return (x0 - c_skip * x) / c_out
            return x0
        return (x - x0) / append_dims(tf, x.ndim).to(x)


def _data(n, *spatial, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, *spatial, generator=g)
    return x * _like(S, x) + _like(MU, x)


def test_conversions_are_exact_inverses():
    x_t = torch.randn(5, 3, 2, 2, 2, dtype=torch.float64)
    ab = torch.rand(5, dtype=torch.float64) * 0.98 + 0.01
    pred = torch.randn_like(x_t)
    kinds = ["epsilon", "v", "x0"]
    for src, dst in itertools.permutations(kinds, 2):
        back = convert_prediction(convert_prediction(pred, x_t, ab, src, dst), x_t, ab, dst, src)
        assert torch.allclose(back, pred, atol=1e-10), (src, dst)
    # consistent with the forward process: x_t = a x0 + b eps, v = a eps - b x0 (arXiv:2202.00512)
    x0, eps = torch.randn_like(x_t), torch.randn_like(x_t)
    obj = DDPMObjective(ObjectiveConfig(prediction="v"))
    xt = obj.add_noise(x0, eps, ab)
    assert torch.allclose(convert_prediction(eps, xt, ab, "epsilon", "x0"), x0, atol=1e-10)
    assert torch.allclose(convert_prediction(obj.target(x0, eps, ab), xt, ab, "v", "epsilon"), eps, atol=1e-10)


def test_min_snr_weights_equal_clipped_x0_weighting():
    """min-SNR: every parameterisation's weighted loss equals the x0 loss times min(snr, gamma)."""
    ab = torch.tensor([0.01, 0.2, 0.5, 0.9, 0.999], dtype=torch.float64)
    snr = ab / (1 - ab)
    x0, eps = torch.randn(5, 3, 4, dtype=torch.float64), torch.randn(5, 3, 4, dtype=torch.float64)
    x_t = append_dims(ab.sqrt(), 3) * x0 + append_dims((1 - ab).sqrt(), 3) * eps
    x0_hat = x0 + 0.1 * torch.randn_like(x0)
    x0_loss = (x0_hat - x0).square().mean((1, 2))
    for pred in ["epsilon", "v", "x0"]:
        target = convert_prediction(x0, x_t, ab, "x0", pred)
        out = convert_prediction(x0_hat, x_t, ab, "x0", pred)
        loss = (out - target).square().mean((1, 2)) * min_snr_weight(snr, 5.0, pred)
        assert torch.allclose(loss, x0_loss * snr.clamp(max=5.0), rtol=1e-9), pred
    assert torch.allclose(min_snr_weight(snr, 5.0, "epsilon"), (5.0 / snr).clamp(max=1.0))


def _ddpm_optimal_eps_loss(obj):
    """E_t mean_c Var[eps | x_t] = a^2 s^2 / (a^2 s^2 + b^2), t uniform over the T steps."""
    ab = obj.alphas_cumprod.float()[:, None]
    return (ab * S**2 / (ab * S**2 + 1 - ab)).mean().item()


def test_ddpm_oracle_reaches_closed_form_minimum():
    obj = DDPMObjective(ObjectiveConfig(prediction="epsilon"))
    x0 = _data(20_000)
    loss, per_channel = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(_ddpm_optimal_eps_loss(obj), rel=0.03)
    assert per_channel.shape == (3,) and not per_channel.requires_grad
    wrong, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(1))
    assert wrong > loss


@pytest.mark.parametrize("prediction", ["v", "x0"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_ddpm_oracle_beats_wrong_model(prediction, gamma):
    obj = DDPMObjective(ObjectiveConfig(prediction=prediction, min_snr_gamma=gamma, schedule="cosine"))
    x0 = _data(4000, 1, 1, 1)  # (B, C, 1, 1, 1): same code for volumes
    good, _ = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(2))
    bad, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(2))
    assert good < bad


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_zero_terminal_snr_loss_is_finite_and_minimised_by_the_oracle(prediction):
    """At alpha_bar = 0 the v target is -x0 and x_t is pure noise; the loss stays finite and the
    exact denoiser still beats a wrong one (every step, the zero-SNR one included, is drawn)."""
    obj = DDPMObjective(ObjectiveConfig(prediction=prediction, zero_terminal_snr=True, num_train_steps=10))
    x0 = _data(4000, 1, 1, 1)
    good, _ = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(2))
    bad, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(good) and good < bad
    # the terminal step alone: E|v - v_hat|^2 = Var[x0] = mean s^2 for the exact net
    last = torch.full((4000,), 9.0)
    ab = obj.alpha_bar(last)
    x_t = obj.add_noise(x0, torch.randn_like(x0), obj.alphas_cumprod[-1].expand(4000))
    pred = Oracle(obj)(x_t, last)
    target = -x0 if prediction == "v" else x0  # v = a eps - b x0 with a = 0, b = 1
    assert ab.max().item() < 1e-300
    # from pure noise the best guess is the data mean: the error is the data variance either way
    assert (pred - target).square().mean().item() == pytest.approx((S**2).mean().item(), rel=0.1)


def test_flow_oracle_reaches_closed_form_minimum():
    """With v = eps - x0 and v_hat = (x_t - x0_hat) / t, the optimal velocity loss per dim is
    Var[x0 | x_t] / t^2 = s^2 / ((1 - t)^2 s^2 + t^2); average over t ~ U(0, 1)."""
    obj = FlowMatchingObjective(ObjectiveConfig(type="flow", time_sampling="uniform"))
    x0 = _data(40_000)
    loss, _ = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(3))
    t = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    s2 = S.double() ** 2
    expected = (s2 / ((1 - t[:, None]) ** 2 * s2 + t[:, None] ** 2)).mean().item()
    assert loss.item() == pytest.approx(expected, rel=0.04)
    bad, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(3))
    assert bad > loss


def test_flow_x0_target_reaches_closed_form_minimum_and_denoises_like_velocity():
    """flow_target x0 regresses x0 itself: the optimal loss per dim is Var[x0 | x_t]
    = s^2 t^2 / ((1 - t)^2 s^2 + t^2), the velocity optimum times t^2; and its denoiser returns the
    net's output, so the two oracles (same posterior mean) give the same x0_hat."""
    obj = FlowMatchingObjective(ObjectiveConfig(type="flow", time_sampling="uniform", flow_target="x0"))
    x0 = _data(40_000)
    loss, _ = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(3))
    t = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    s2 = S.double() ** 2
    expected = (s2 * t[:, None] ** 2 / ((1 - t[:, None]) ** 2 * s2 + t[:, None] ** 2)).mean().item()
    assert loss.item() == pytest.approx(expected, rel=0.04)
    bad, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(3))
    assert bad.item() == pytest.approx(loss.item() + 0.04, rel=0.05)  # + bias^2: the target is x0, not eps - x0
    vel = FlowMatchingObjective(ObjectiveConfig(type="flow"))
    x, tt = _data(8, 4) * 0.7, torch.tensor([0.05, 0.3, 0.6, 0.9] * 2, dtype=torch.float64)
    assert torch.allclose(obj.denoiser(Oracle(obj))(x, tt, {}), vel.denoiser(Oracle(vel))(x, tt, {}), atol=1e-5)
    with pytest.raises(ValueError, match="flow_target applies to objective type 'flow'"):
        ObjectiveConfig(type="ddpm", flow_target="x0")


def test_x0_skip_is_the_x0_objective_reparameterised():
    """x0_skip_sigma: the oracle in the skip's own output reaches the x0 objective's optimum, a bias in x0
    costs bias^2 as there, and its denoiser returns the same posterior mean. A net that outputs 0 returns
    its input near t = 0 (the pass-through the plain x0 net lacks) and exact zeros at t = 1."""
    obj = FlowMatchingObjective(ObjectiveConfig(type="flow", time_sampling="uniform", flow_target="x0",
                                                x0_skip_sigma=0.5))
    plain = FlowMatchingObjective(ObjectiveConfig(type="flow", time_sampling="uniform", flow_target="x0"))
    x0 = _data(40_000)
    loss, _ = obj.loss(Oracle(obj), x0, generator=torch.Generator().manual_seed(3))
    ref, _ = plain.loss(Oracle(plain), x0, generator=torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-3)
    bad, _ = obj.loss(Oracle(obj, bias=0.2), x0, generator=torch.Generator().manual_seed(3))
    assert bad.item() == pytest.approx(loss.item() + 0.04, rel=0.05)
    x, tt = _data(8, 4) * 0.7, torch.tensor([0.05, 0.3, 0.6, 0.9] * 2, dtype=torch.float64)
    assert torch.allclose(obj.denoiser(Oracle(obj))(x, tt, {}), plain.denoiser(Oracle(plain))(x, tt, {}), atol=1e-5)
    zero = lambda x, t, **cond: torch.zeros_like(x)  # noqa: E731
    near = obj.denoiser(zero)(x, torch.full((8,), 1e-3), {})
    assert torch.allclose(near, x, atol=2e-3 * x.abs().max().item())
    assert torch.equal(obj.denoiser(zero)(x, torch.ones(8), {}), torch.zeros_like(x))
    for bad_cfg in ({"x0_skip_sigma": 0.5}, {"x0_skip_sigma": -1.0, "flow_target": "x0"}):
        with pytest.raises(ValueError, match="x0_skip_sigma"):
            ObjectiveConfig(type="flow", **bad_cfg)


def test_per_image_channel_skip_is_each_channels_own_skip():
    """x0_skip_sigmas: every latent channel gets its image channel's skip (the halved images 0.025, the masks at
    x0_skip_sigma 0.05), exactly as an objective with that one skip would give it; a channel at 0 returns the
    net's output (no NaN at t = 0); the sampler's denoiser uses the same skip as the loss; names the model lacks,
    models without image-named channels, building it without names and negative values are refused."""
    names = ["LLL:t1n", "LLL:WT", "LLH:t1n", "LLH:WT", "LLL:ET", "HHH:ET"]
    per = build_objective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigma=0.05,
                                          x0_skip_sigmas={"t1n": 0.025, "ET": 0.0}), names)
    assert per.skip_sigmas == (0.025, 0.05, 0.025, 0.05, 0.0, 0.0)
    one = {s: FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigma=s)) for s in (0.025, 0.05)}
    g = torch.Generator().manual_seed(0)
    x, out = (torch.randn(5, 6, 2, 3, 2, generator=g) for _ in range(2))
    t = torch.tensor([0.0, 0.02, 0.3, 0.7, 1.0])
    got = per.skip(out, x, t)
    for c, s in enumerate(per.skip_sigmas):
        want = out[:, c] if s == 0 else one[s].skip(out, x, t)[:, c]
        assert torch.allclose(got[:, c], want, atol=1e-6), (c, s)
    assert torch.isfinite(got).all()
    net = lambda x, t, **cond: out  # noqa: E731
    assert torch.allclose(per.denoiser(net)(x, t, {}), got)
    # the loss sees the same skip: a net whose skip-mapped output is x0 itself has zero loss
    x0, noise = torch.randn(5, 6, 2, 3, 2, generator=g), torch.randn(5, 6, 2, 3, 2, generator=g)

    class Exact(nn.Module):  # F = (x0 - c_skip x_t) / c_out, read back through the objective's own skip
        def forward(self, x_t, tn, **cond):
            tt = tn / per.num_train_steps
            zero = torch.zeros_like(x_t)
            c_skip, c_out = per.skip(zero, x_t, tt), per.skip(torch.ones_like(x_t), x_t, tt) - per.skip(zero, x_t, tt)
            return (x0 - c_skip) / c_out

    loss, _ = per.loss(Exact(), x0, generator=torch.Generator().manual_seed(1))
    assert loss.item() < 1e-8
    with pytest.raises(MedidiffError, match=r"names \['t2w'\]"):
        build_objective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigmas={"t2w": 0.025}), names)
    with pytest.raises(MedidiffError, match="not named by sub-band"):
        build_objective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigmas={"t1n": 0.025}), ["z0", "z1"])
    with pytest.raises(MedidiffError, match="channel names"):
        build_objective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigmas={"t1n": 0.025}))
    for bad_cfg in ({"x0_skip_sigmas": {"t1n": -0.1}, "flow_target": "x0"}, {"x0_skip_sigmas": {"t1n": 0.1}}):
        with pytest.raises(ValueError, match="x0_skip_sigma"):
            ObjectiveConfig(type="flow", **bad_cfg)


def test_flow_l1_and_channel_weights():
    x0 = _data(500, 2, 2)
    cfg = ObjectiveConfig(type="flow", loss="l1", channel_weights=[1.0, 0.0, 3.0])
    obj = build_objective(cfg)
    loss, per_channel = obj.loss(Oracle(obj, bias=0.1), x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(((per_channel * torch.tensor([1.0, 0.0, 3.0])).sum() / 4).item(), rel=1e-5)
    obj2 = build_objective(ObjectiveConfig(type="flow", channel_weights=[1.0, 1.0]))
    with pytest.raises(ValueError, match="one weight per channel"):
        obj2.loss(Oracle(obj2), x0)


@pytest.mark.parametrize("kind", ["ddpm", "flow"])
def test_detail_weight_weights_every_sub_band_but_the_coarsest(kind):
    from medidiff.latents.haar import subband_names

    names = subband_names(2, ["t1n", "WT"])  # 128 channels; LLL.LLL:* are the coarsest two
    obj = build_objective(ObjectiveConfig(type=kind, detail_weight=10.0), names)
    w = obj.config.channel_weights
    assert w[:2] == [1.0, 1.0] and set(w[2:]) == {10.0} and obj.config.detail_weight == 1.0
    # it multiplies explicit channel weights; the loss is their weighted mean
    base = [float(i % 3) for i in range(len(names))]
    obj = build_objective(ObjectiveConfig(type=kind, detail_weight=0.5, channel_weights=base), names)
    assert obj.config.channel_weights == [b * (1.0 if i < 2 else 0.5) for i, b in enumerate(base)]
    # 1 leaves the config as it is; a model without sub-bands (a VAE's z0..) is refused
    assert build_objective(ObjectiveConfig(type=kind)).config.channel_weights is None
    with pytest.raises(MedidiffError, match="not named by sub-band"):
        build_objective(ObjectiveConfig(type=kind, detail_weight=10.0), ["z0", "z1"])
    # built for sampling (no names): it samples, but a loss from it is refused, not silently unweighted
    unresolved = build_objective(ObjectiveConfig(type=kind, detail_weight=10.0))
    with pytest.raises(MedidiffError, match="not resolved"):
        unresolved.loss(lambda x, t, **cond: x, torch.zeros(2, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="positive"):
        ObjectiveConfig(type=kind, detail_weight=0.0)


def test_detail_weights_per_image_channel_replace_the_common_one():
    from medidiff.config import load_config
    from medidiff.latents.haar import subband_names

    names = subband_names(1, ["t1n", "t2f", "WT"])  # 24 channels: band-major or channel-major, named either way
    obj = build_objective(ObjectiveConfig(type="flow", detail_weight=1000.0, detail_weights={"t1n": 3000.0, "t2f": 300.0}),
                          names)
    for name, w in zip(names, obj.config.channel_weights):
        band, _, image = name.partition(":")
        assert w == (1.0 if "H" not in band else {"t1n": 3000.0, "t2f": 300.0}.get(image, 1000.0)), name
    assert obj.config.detail_weights is None and obj.config.detail_weight == 1.0
    # alone (detail_weight 1): only the named channel's detail bands are weighted
    w = build_objective(ObjectiveConfig(type="flow", detail_weights={"WT": 5.0}), names).config.channel_weights
    assert {(n.partition(":")[2], x) for n, x in zip(names, w) if x != 1.0} == {("WT", 5.0)}
    with pytest.raises(MedidiffError, match=r"names \['t1c'\].*image channels are \['t1n', 't2f', 'WT'\]"):
        build_objective(ObjectiveConfig(type="flow", detail_weights={"t1c": 2.0}), names)
    with pytest.raises(MedidiffError, match="not resolved"):
        build_objective(ObjectiveConfig(type="flow", detail_weights={"t1n": 2.0})).loss(lambda x, t, **c: x,
                                                                                        torch.zeros(2, 24, 4, 4, 4))
    with pytest.raises(ValueError, match="detail_weights must be positive"):
        ObjectiveConfig(type="flow", detail_weights={"t1n": -1.0})
    # from a config file's override, as a user writes it
    cfg = load_config(None, ["objective.detail_weights={t1n: 3000, t2f: 300}"])
    assert cfg.objective.detail_weights == {"t1n": 3000.0, "t2f": 300.0}


def test_x0_time_power_weights_each_sample_by_t_to_the_minus_power():
    x0 = _data(64, 2, 2)
    base = FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0"))
    weighted = FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0", x0_time_power=2.0))
    net = Oracle(base, bias=0.1)
    # the same t, noise and prediction: only the per-sample weight differs
    plain, _ = base.loss(net, x0, generator=torch.Generator().manual_seed(3))
    heavy, _ = weighted.loss(net, x0, generator=torch.Generator().manual_seed(3))
    t = base.sample_time(x0.shape[0], shape=x0.shape[2:], generator=torch.Generator().manual_seed(3))
    w = t.clamp_min(0.05) ** -2
    assert heavy.item() > plain.item()
    assert weighted.time_weight(t) == pytest.approx(w) and base.time_weight(t) is None
    assert weighted.time_weight(torch.tensor([0.0, 0.01])).max().item() == pytest.approx(400.0)  # the floor
    for bad in ({"x0_time_power": 1.0}, {"x0_time_power": 3.0, "flow_target": "x0"},
                {"x0_time_power": 1.0, "type": "ddpm"}):
        with pytest.raises(ValueError, match="x0_time_power"):
            ObjectiveConfig(**{"type": "flow", **bad})


def test_flow_time_sampling_and_shift():
    g = torch.Generator().manual_seed(0)
    obj = FlowMatchingObjective(ObjectiveConfig(type="flow", time_shift=True))
    base = obj.sample_time(5000, shape=(32, 32, 32), generator=g)
    g = torch.Generator().manual_seed(0)
    big = obj.sample_time(5000, shape=(64, 64, 64), generator=g)
    assert ((base > 0) & (base < 1)).all()
    assert (big >= base).all() and big.mean() > base.mean() + 0.1  # same draws, shifted to noise
    grid = obj.timesteps(10, shape=(64, 64, 64))
    assert grid[0] == 1 and grid[-1] == 0 and (grid.diff() < 0).all()
    with pytest.raises(ValueError, match="spatial shape"):
        obj.timesteps(10)


def test_flow_denoiser_is_x_minus_t_v():
    obj = FlowMatchingObjective(ObjectiveConfig(type="flow"))

    class Const(nn.Module):
        def forward(self, x, t, **cond):
            assert t.max() > 1  # network time is t * num_train_steps
            return torch.ones_like(x)

    x, t = torch.randn(4, 3, 2), torch.tensor([0.1, 0.4, 0.7, 1.0], dtype=torch.float64)
    assert torch.allclose(obj.denoiser(Const())(x, t, {}), x - t.float()[:, None, None])


def test_cfg_dropout_is_per_sample_and_uses_null_conditions():
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t, class_labels, cond_image):
            seen["labels"], seen["image"] = class_labels, cond_image
            return torch.zeros_like(x)

    obj = DDPMObjective(ObjectiveConfig(cond_drop_prob=0.3, cond_drop_keys=["class_labels"]))
    x0 = _data(2000, 2)
    cond = {"class_labels": torch.randint(0, 3, (2000,)), "cond_image": torch.ones(2000, 1, 2)}
    obj.loss(Spy(), x0, cond, generator=torch.Generator().manual_seed(0), null_cond={"class_labels": 3})
    dropped = seen["labels"] == 3
    assert 0.25 < dropped.float().mean() < 0.35
    assert torch.equal(seen["labels"][~dropped], cond["class_labels"][~dropped])
    assert torch.equal(seen["image"], cond["cond_image"])  # not in cond_drop_keys: never dropped
    with pytest.raises(ValueError, match="null class index"):
        obj.loss(Spy(), x0, cond, generator=torch.Generator().manual_seed(0))


def test_loss_is_reproducible_from_generator_and_differentiable():
    obj = DDPMObjective(ObjectiveConfig(prediction="v"))
    net = nn.Conv3d(3, 3, 1)
    fwd = lambda x, t: net(x)  # noqa: E731
    wrapper = type("W", (nn.Module,), {"forward": lambda self, x, t, **c: fwd(x, t)})()
    x0 = _data(4, 2, 2, 2)
    a, _ = obj.loss(wrapper, x0, generator=torch.Generator().manual_seed(5))
    b, _ = obj.loss(wrapper, x0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    a.backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()


class _Conv(nn.Module):
    """net(x, t): a 1x1x1 convolution that ignores t."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 3, 1)

    def forward(self, x, t, **cond):
        return self.conv(x)


@pytest.mark.parametrize("kind", ["flow", "ddpm"])
def test_channel_weighted_loss_makes_its_weights_once(kind):
    # the weights went to the device from host memory every step: on CUDA each copy made the host
    # wait for the GPU (issue 15, the anatomy recipe's loop); now one tensor per device and dtype
    from medidiff.utils import tensor as tensor_utils

    obj = build_objective(ObjectiveConfig(type=kind, channel_weights=[1.0, 0.0, 3.0]))
    net = _Conv()
    x0 = torch.randn(2, 3, 4, 4, 4)
    obj.loss(net, x0, generator=torch.Generator().manual_seed(0))
    made = tensor_utils.tensor_on.cache_info().misses
    for seed in range(3):
        loss, per_channel = obj.loss(net, x0, generator=torch.Generator().manual_seed(seed))
        w = torch.tensor([1.0, 0.0, 3.0])
        assert torch.allclose(loss, (per_channel * w).sum() / w.sum())  # still the weighted mean
    assert tensor_utils.tensor_on.cache_info().misses == made


@pytest.mark.gpu
def test_channel_weighted_loss_step_never_waits_for_the_host_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    dev = torch.device("cuda")
    obj = build_objective(ObjectiveConfig(type="flow", channel_weights=[1.0, 0.0, 3.0]))
    net = _Conv().to(dev)
    x0 = torch.randn(2, 3, 8, 8, 8, device=dev)
    gen = torch.Generator(dev).manual_seed(0)
    obj.loss(net, x0, generator=gen)[0].backward()  # first step: weights made, kernels loaded
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            obj.loss(net, x0, generator=gen)[0].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
def test_background_weighted_loss_step_never_waits_for_the_host_on_cuda():
    # what DiffusionLoss adds a step with objective.background_weight: the images' background blocks and the weights
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from medidiff.training.diffusion import background_blocks

    dev = torch.device("cuda")
    obj = build_objective(ObjectiveConfig(type="flow", background_weight=10.0))
    net = _Conv().to(dev)
    images = -torch.ones(2, 3, 16, 16, 16, device=dev)
    images[:, :, 4:12, 4:12, 4:12] = 0.2
    x0 = torch.randn(2, 3, 8, 8, 8, device=dev)
    gen = torch.Generator(dev).manual_seed(0)

    def step() -> None:
        obj.loss(net, x0, generator=gen, background=background_blocks(images, (2, 2, 2)))[0].backward()

    step()  # first step: kernels loaded
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("kind", ["ddpm", "flow"])
def test_background_weight_is_a_per_case_weighted_mean_over_space(kind):
    # a net whose x0 is off by 1 on background positions and by 2 elsewhere; case 0 is half background,
    # case 1 a quarter (a normalisation over the batch instead of per case would give another loss)
    x0 = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    background = torch.zeros(2, 1, 4, 4, 4)
    background[0, :, :2] = 1.0
    background[1, :, :1] = 1.0
    err = 1.0 + (1.0 - background)  # (B, 1, ...) broadcast over channels

    def loss_of(weight: float) -> float:
        extra = {"flow_target": "x0"} if kind == "flow" else {"prediction": "x0"}
        obj = build_objective(ObjectiveConfig(type=kind, background_weight=weight, **extra))
        loss, _ = obj.loss(lambda x, t, **c: x0 + err, x0, generator=torch.Generator().manual_seed(1),
                           background=background)
        return loss.item()

    plain = [0.5 * 1 + 0.5 * 4, 0.25 * 1 + 0.75 * 4]  # per case, background share 1/2 and 1/4
    assert loss_of(1.0) == pytest.approx(sum(plain) / 2)  # off: the plain mean
    # weight 3: per case the weights are normalised to a mean of 1 (case 0: 3/2 and 1/2; case 1: 3/1.5 and 1/1.5)
    weighted = [0.5 * 1.5 * 1 + 0.5 * 0.5 * 4, 0.25 * 2.0 * 1 + 0.75 * (1 / 1.5) * 4]
    assert loss_of(3.0) == pytest.approx(sum(weighted) / 2)
    assert loss_of(0.5) > loss_of(1.0) > loss_of(3.0)  # the weight moves the loss toward the background's error


def test_spatial_weights_multiply_where_their_maps_overlap_and_are_refused_without_their_map():
    from medidiff.utils.tensor import spatial_weight_map

    background = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 4, 1, 1)
    edge = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 4, 1, 1)
    tumour = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 4, 1, 1)
    maps = {"background": background, "edge": edge, "tumour": tumour}
    off = ObjectiveConfig(type="flow").spatial_weights()
    assert spatial_weight_map(off, {}) is None  # every weight off: no map at all
    assert spatial_weight_map({**off, "edge_weight": 3.0}, maps).flatten().tolist() == [1.0, 3.0, 3.0, 1.0]
    assert spatial_weight_map({**off, "background_weight": 2.0, "edge_weight": 3.0},
                              maps).flatten().tolist() == [2.0, 6.0, 3.0, 1.0]
    assert spatial_weight_map({**off, "edge_weight": 3.0, "tumour_weight": 4.0},
                              maps).flatten().tolist() == [1.0, 3.0, 12.0, 4.0]
    for key in ("edge_weight", "tumour_weight"):
        obj = build_objective(ObjectiveConfig(type="flow", **{key: 3.0}))
        with pytest.raises(MedidiffError, match=key):
            obj.loss(lambda x, t, **c: x, _data(4, 2, 2), background=torch.ones(4, 1, 2, 2))
        with pytest.raises(ValueError, match=f"{key} must be a positive"):
            ObjectiveConfig(type="flow", **{key: float("nan")})


@pytest.mark.parametrize("cfg", [dict(type="flow", flow_target="x0"), dict(type="ddpm", prediction="x0")])
def test_an_x0_dependent_weight_moves_the_optimum_and_the_noise_limit_takes_it_back(cfg):
    """Eight cases of ten hold a tumour at position A (x0 = 1; the other two 0 there), position B is empty in
    all. A net that answers a constant c at A, whatever x_t: the loss's minimiser is the weighted mean of
    x0 at A. Unweighted 0.8; tumour_weight 5 (normalised per case: 5/3 at A in a tumour case, 1 in the others)
    pulls it to 0.8 * 5/3 / (0.8 * 5/3 + 0.2) = 0.870, the bias that made every 2 mm case tumour-positive.
    With spatial_weight_max_sigma below every sampled noise level the weight is off and 0.8 comes back."""
    x0 = torch.zeros(10, 1, 2, 1, 1)
    x0[:8, 0, 0] = 1.0
    tumour = (x0 > 0).float()

    def argmin(**extra):
        obj = build_objective(ObjectiveConfig(**cfg, tumour_weight=5.0, **extra))
        grid = torch.linspace(0.0, 1.0, 1001)
        losses = []
        for c in grid:
            def net(x, t, c=c, **_):
                out = torch.zeros_like(x)
                out[:, :, 0] = c
                return out
            losses.append(float(obj.loss(net, x0, generator=torch.Generator().manual_seed(0), tumour=tumour)[0]))
        return float(grid[int(torch.tensor(losses).argmin())])

    assert argmin() == pytest.approx(0.8 * 5 / 3 / (0.8 * 5 / 3 + 0.2), abs=1e-3)
    assert argmin(spatial_weight_max_sigma=1e-9) == pytest.approx(0.8, abs=1e-3)
    assert argmin(spatial_weight_max_sigma=1e9) == argmin()  # above every level: as without the limit


@pytest.mark.parametrize("cfg", [dict(type="flow", flow_target="x0"), dict(type="ddpm", prediction="x0")])
def test_a_tumour_map_function_is_read_off_the_noisy_input_with_its_signal_coefficient(cfg):
    """objective.tumour_map input: the objective calls the map with (x_t, a), x_t = a x0 + b eps (flow: b = 1 - a;
    DDPM: b = sqrt(1 - a^2)), so the map can read x0's scale off x_t; its 0/1 map weighs the loss as a tensor."""
    x0 = _data(64, 4, 4, 4)
    seen = {}
    where = (torch.arange(64) % 4 == 0).float().view(64, 1, 1, 1, 1).expand(64, 1, 4, 4, 4).clone()
    where[:, :, :2] = 0  # a non-uniform 0/1 map

    def tumour(x_t, a):
        seen.update(x_t=x_t, a=a)
        return where

    def loss(objective, **kwargs):
        return float(objective.loss(lambda x, t, **c: x, x0, generator=torch.Generator().manual_seed(0), **kwargs)[0])

    obj = build_objective(ObjectiveConfig(**cfg, tumour_weight=5.0, spatial_weight_max_sigma=1.0))
    active = obj.config.spatial_weight_active
    obj.config.spatial_weight_active = lambda sigma: seen.update(sigma=sigma) or active(sigma)  # a spy
    with_map = loss(obj, tumour=tumour)
    a = seen["a"].double().reshape(-1, 1, 1, 1, 1)
    b = (1 - a) if cfg["type"] == "flow" else (1 - a.square()).sqrt()
    eps = (seen["x_t"].double() - a * x0.double()) / b  # the noise the objective drew: standard normal
    assert abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1.0) < 0.05
    # the noise level the limit reads is the noise std over the signal coefficient
    assert torch.allclose(seen["sigma"].double().flatten(), (b / a).flatten(), rtol=1e-4)
    # the map's result weighs the loss exactly as the same map given as a tensor, and differs from no weight
    assert with_map == pytest.approx(loss(obj, tumour=where), rel=1e-6)
    assert with_map != pytest.approx(loss(build_objective(ObjectiveConfig(**cfg))), rel=1e-5)


def test_the_noise_limit_turns_the_weights_off_per_sample():
    from medidiff.utils.tensor import spatial_weight_map

    off = ObjectiveConfig(type="flow").spatial_weights()
    tumour = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(2, 1, 2, 1, 1)
    cfg = ObjectiveConfig(type="flow", tumour_weight=4.0, spatial_weight_max_sigma=0.5)
    active = cfg.spatial_weight_active(torch.tensor([0.5, 0.6]))  # the limit itself is inside
    assert active.tolist() == [True, False]
    assert spatial_weight_map({**off, "tumour_weight": 4.0}, {"tumour": tumour},
                              active).flatten().tolist() == [1.0, 4.0, 1.0, 1.0]
    assert ObjectiveConfig(type="flow").spatial_weight_active(torch.tensor([9.0])) is None
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="spatial_weight_max_sigma"):
            ObjectiveConfig(type="flow", spatial_weight_max_sigma=bad)


def test_background_weight_without_a_background_map_is_refused_not_ignored():
    from medidiff.config import load_config

    obj = build_objective(ObjectiveConfig(type="flow", background_weight=10.0))
    with pytest.raises(MedidiffError, match="background_weight"):
        obj.loss(lambda x, t, **c: x, _data(4, 2, 2))
    with pytest.raises(ValueError, match="background_weight must be a positive"):
        ObjectiveConfig(type="flow", background_weight=0.0)
    assert load_config(None, ["objective.background_weight=10"]).objective.background_weight == 10.0


def test_halved_data_with_halved_time_shift_and_skip_is_the_same_problem():
    """Data at half the amplitude (data.percentile_top 0 halves the brain's range) meets every time at a quarter
    of the signal-to-noise ratio. Halving the time shift's factor (odds t / (1 - t) halved) and EDM's skip sigma
    (set by the data's std) makes it the original problem: at the matched times the noisy input is the original
    one rescaled, and for the same net output the x0 estimate is exactly half the original's."""
    from medidiff.objectives.schedules import shift_time

    shape = (40, 48, 40)
    full = FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigma=0.05, time_shift=True))
    half = FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigma=0.025, time_shift=True,
                                                 shift_base_voxels=4 * 32**3))
    assert half.shift(shape) == pytest.approx(full.shift(shape) / 2)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(6, generator=g, dtype=torch.float64) * 0.98 + 0.01
    t_full, t_half = shift_time(u, full.shift(shape)), shift_time(u, half.shift(shape))
    assert torch.allclose(t_half / (1 - t_half), t_full / (1 - t_full) / 2)
    x0, eps, out = (torch.randn(6, 2, 3, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    x_full, x_half = full.add_noise(x0, eps, t_full), half.add_noise(x0 / 2, eps, t_half)
    scale = append_dims((1 - t_half) / (2 * (1 - t_full)), x0.ndim)
    assert torch.allclose(x_half, scale * x_full)
    assert torch.allclose(half.skip(out, x_half, t_half), full.skip(out, x_full, t_full) / 2)
    # the skip left at 0.05 on the halved data is not: its pass-through weighs the noisy input differently
    off = FlowMatchingObjective(ObjectiveConfig(type="flow", flow_target="x0", x0_skip_sigma=0.05, time_shift=True,
                                                shift_base_voxels=4 * 32**3))
    assert not torch.allclose(off.skip(out, x_half, t_half), full.skip(out, x_full, t_full) / 2)
