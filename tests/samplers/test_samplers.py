"""Samplers against closed forms: Gaussian data has an exact optimal denoiser.

For x0 ~ N(mu, diag(s^2)) and x_t = a x0 + b eps (DDPM: a = sqrt(ab), b = sqrt(1 - ab);
flow: a = 1 - t, b = t) the MMSE denoiser is
    E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + b^2) (x_t - a mu),
so every sampler driven by it must reproduce the data mean and variance, up to its own
discretisation error and Monte-Carlo error (20k samples: ~0.01 s on the mean, ~1% on the variance).
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from medidiff.objectives import DDPMObjective, FlowMatchingObjective, ObjectiveConfig, convert_prediction
from medidiff.samplers import (
    SAMPLERS,
    Guidance,
    SamplerConfig,
    cfg_denoiser,
    generators_from_seeds,
    drop_conditions,
    null_conditions,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sampling_grid,
    with_tail,
)
from medidiff.utils.tensor import append_dims

MU = torch.tensor([0.5, -1.0, 0.0])
S = torch.tensor([0.3, 1.0, 2.0])
N = 20_000


def _like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(C,) -> broadcastable against (B, C, *spatial) for any rank."""
    return v.to(x).reshape(1, -1, *([1] * (x.ndim - 2)))


def gaussian_x0(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu, s2 = _like(MU, x), _like(S, x) ** 2
    a, b = append_dims(a, x.ndim).to(x), append_dims(b, x.ndim).to(x)
    return mu + a * s2 / (a**2 * s2 + b**2) * (x - a * mu)


def ddpm_oracle(x, alpha_bar, cond):
    return gaussian_x0(x, alpha_bar.sqrt(), (1 - alpha_bar).sqrt())


def flow_oracle(x, t, cond):
    return gaussian_x0(x, 1 - t, t)


class OracleNet(nn.Module):
    """The optimal network for an objective, in its own parameterisation and network time."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective
        self.calls = 0

    def forward(self, x, t, **cond):
        self.calls += 1
        obj = self.objective
        if obj.kind == "ddpm":
            ab = obj.alpha_bar(t)
            return convert_prediction(ddpm_oracle(x, ab, cond), x, ab, "x0", obj.prediction)
        tf = t.double() / obj.num_train_steps
        return (x - flow_oracle(x, tf, cond)) / append_dims(tf, x.ndim).to(x)  # velocity eps - x0


DDPM = DDPMObjective(ObjectiveConfig(type="ddpm"))
COSINE = DDPMObjective(ObjectiveConfig(type="ddpm", schedule="cosine"))
FLOW = FlowMatchingObjective(ObjectiveConfig(type="flow"))


def _exact_law(sampler, denoiser, ts, **kwargs):
    """Output law of a deterministic sampler driven by the (affine) Gaussian oracle.

    The whole sampler is then an affine map x_T -> A x_T + c per dim, so with x_T ~ N(0, 1)
    its output is N(c, A^2) exactly: two probes (x = 0, x = 1) give c and A, no Monte Carlo.
    """
    probe = torch.stack([torch.zeros(3), torch.ones(3)]).double()
    y = sampler(denoiser, probe, ts, **kwargs)
    return y[0], y[1] - y[0]  # mean c, std A


def _law_error(sampler, denoiser, ts):
    mean, std = _exact_law(sampler, denoiser, ts)
    return (mean - MU).abs().max().item(), (std / S - 1).abs().max().item()


@pytest.mark.parametrize(
    "name,obj,steps,tol,order",
    [("ddim", COSINE, 100, 0.03, 1), ("euler", FLOW, 100, 0.025, 1), ("heun", FLOW, 25, 0.01, 2)],
)
def test_deterministic_sampler_exact_law_and_convergence_order(name, obj, steps, tol, order):
    oracle = ddpm_oracle if obj.kind == "ddpm" else flow_oracle
    mean_err, std_err = _law_error(SAMPLERS[name], oracle, obj.timesteps(steps))
    assert mean_err < 1e-3 and std_err < tol, (mean_err, std_err)
    # first-order methods halve the error when the steps double, Heun quarters it
    _, coarse = _law_error(SAMPLERS[name], oracle, obj.timesteps(steps // 2))
    assert coarse / std_err > (1.8 if order == 1 else 3.5)


def test_linear_schedule_terminal_snr_bias():
    """Starting from N(0, 1) ignores the signal left at t = T (sqrt(alpha_bar_T) mu, non-zero
    terminal SNR, arXiv:2305.08891): it biases the mean by about that much, not more."""
    mean, _ = _exact_law(sample_ddim, ddpm_oracle, DDPM.timesteps(200))
    leftover = DDPM.alphas_cumprod[-1].sqrt().item()
    assert ((mean - MU).abs() <= 2 * leftover * MU.abs().max() + 1e-4).all()


def _zero_snr_stats(name: str, steps: int, zero: bool, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    obj = DDPMObjective(ObjectiveConfig(schedule="scaled_linear", prediction="v", zero_terminal_snr=zero))
    torch.manual_seed(0)
    out = sample(obj, OracleNet(obj), (n, 3), config=SamplerConfig(name=name, num_steps=steps))
    return out.mean(0), out.std(0)


def test_zero_terminal_snr_removes_the_terminal_bias():
    """scaled_linear leaves sqrt(alpha_bar[T-1]) = 0.068 of the signal where sampling starts from
    pure noise, which biases even 1000-step DDIM by about 0.068 mu / s data stds; the rescaled
    schedule (arXiv:2305.08891) starts at alpha_bar = 0 and the exact v-prediction net's samples
    have the data's mean and std. Same seed for both, so the difference is the bias itself."""
    n = 20_000
    mean, std = _zero_snr_stats("ddim", 1000, True, n)
    assert ((mean - MU).abs() < 4 * S / n**0.5 + 0.005).all(), mean
    assert ((std / S - 1).abs() < 4 / (2 * n) ** 0.5 + 0.01).all(), std
    leak = DDPMObjective(ObjectiveConfig(schedule="scaled_linear")).alphas_cumprod[-1].sqrt().item()
    assert leak == pytest.approx(0.068, abs=0.001)
    bias = _zero_snr_stats("ddim", 1000, False, n)[0] - mean  # (3,): mu = (0.5, -1, 0), s = (0.3, 1, 2)
    assert bias[1].item() == pytest.approx(leak, rel=0.15) and bias[2].abs() < 0.01, bias


def test_zero_terminal_snr_ancestral_sampler_reproduces_gaussian():
    """The ancestral sampler starts at alpha_bar = 0 too (its first step has beta = 1); its fresh
    noise forgets the start point, so it shows no terminal bias either way, only its own
    discretisation error on the small-variance channel."""
    n = 20_000
    mean, std = _zero_snr_stats("ddpm", 500, True, n)
    assert ((mean - MU).abs() < 4 * S / n**0.5 + 0.01).all(), mean
    assert ((std / S - 1).abs() < 4 / (2 * n) ** 0.5 + 0.03).all(), std


@pytest.mark.parametrize(
    "name,steps,kwargs,shape,method_tol",
    [
        ("ddpm", 500, {}, (10_000, 3, 1, 1, 1), 0.02),
        ("ddim", 250, {"eta": 1.0}, (10_000, 3), 0.035),
    ],
)
def test_stochastic_sampler_reproduces_gaussian(name, steps, kwargs, shape, method_tol):
    n = shape[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = SAMPLERS[name](ddpm_oracle, x, COSINE.timesteps(steps), **kwargs)
    assert out.shape == shape
    flat = out.reshape(n, 3)
    # Monte-Carlo tolerance (4 standard errors) plus the sampler's own discretisation error
    assert ((flat.mean(0) - MU).abs() < 4 * S / n**0.5 + 0.01).all(), flat.mean(0)
    assert ((flat.std(0) / S - 1).abs() < 4 / (2 * n) ** 0.5 + method_tol).all(), flat.std(0)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_stochastic_euler_reproduces_gaussian(eta):
    """Euler with eta on the flow path: its fresh noise must keep the data's law (the exact denoiser
    of a Gaussian), as DDIM's does on the DDPM path."""
    n = 10_000
    x = torch.randn((n, 3), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the step noise: the global RNG (one generator a row would draw row by row)
    out = SAMPLERS["euler"](flow_oracle, x, FLOW.timesteps(250), eta=eta)
    assert ((out.mean(0) - MU).abs() < 4 * S / n**0.5 + 0.01).all(), out.mean(0)
    assert ((out.std(0) / S - 1).abs() < 4 / (2 * n) ** 0.5 + 0.035).all(), out.std(0)


def test_stochastic_euler_is_ddim_on_the_flow_path():
    """eta = 0 is the ODE, bit for bit, and draws no noise; eta = 1 at t = 1 (no signal left) forgets
    where it started, as ancestral DDPM's first step does; the posterior std equals DDIM's sigma of
    the same step in variance-preserving units (x_t / sqrt((1 - t)^2 + t^2), alpha_bar = (1 - t)^2 /
    ((1 - t)^2 + t^2)) times the scale at s."""
    import math

    from medidiff.samplers.flow import _posterior_std

    ts = FLOW.timesteps(6, shape=(2, 2))
    x = torch.randn((3, 3, 2, 2), generator=torch.Generator().manual_seed(0))
    gens = generators_from_seeds([1, 2, 3])
    ode = SAMPLERS["euler"](flow_oracle, x, ts)
    assert torch.equal(SAMPLERS["euler"](flow_oracle, x, ts, eta=0.0, generators=gens), ode)
    assert [g.initial_seed() for g in gens] == [1, 2, 3] and torch.equal(
        gens[0].get_state(), generators_from_seeds([1])[0].get_state())  # no draw was made
    first = lambda start: SAMPLERS["euler"](flow_oracle, start, [1.0, 0.6], eta=1.0,  # noqa: E731
                                            generators=generators_from_seeds([1, 2, 3]))
    assert torch.allclose(first(x), first(-3 * x), atol=1e-6)
    assert not torch.allclose(SAMPLERS["euler"](flow_oracle, x, ts, eta=1.0, generators=gens), ode, atol=1e-3)
    for t, s in [(0.9, 0.5), (0.3, 0.1), (0.05, 0.01)]:
        ab_t, ab_s = ((1 - u) ** 2 / ((1 - u) ** 2 + u**2) for u in (t, s))
        vp = math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        assert _posterior_std(t, s) == pytest.approx(vp * math.sqrt((1 - s) ** 2 + s**2), rel=1e-9)
    assert _posterior_std(0.3, 0.0) == 0.0
    with pytest.raises(ValueError, match="eta must be in"):
        SAMPLERS["euler"](flow_oracle, x, ts, eta=1.5)
    with pytest.raises(ValueError, match="ddim and euler option"):
        SamplerConfig(name="heun", eta=0.5)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "heun"])
def test_step_count_is_network_evaluations(name):
    obj = FLOW if name in ("euler", "heun") else DDPM
    net = OracleNet(obj)
    sample(obj, net, (2, 3, 1, 1), config=SamplerConfig(name=name, num_steps=7))
    # Heun's last step (to t = 0) is Euler, so it makes 2N - 1 evaluations
    assert net.calls == (2 * 7 - 1 if name == "heun" else 7)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_tail_steps_refine_only_the_last_step(name):
    """sampler.tail_steps: the objective's grid up to its last non-zero time, then that time / 4, / 16 ... and 0;
    each tail time costs one more step (heun two), and a sample's path is unchanged up to t_last."""
    base = FLOW.timesteps(5)
    grid = sampling_grid(FLOW, SamplerConfig(name=name, num_steps=5, tail_steps=2), ())
    t_last = float(base[-2])
    assert torch.equal(grid[:-3], base[:-1])
    assert grid[-3:].tolist() == pytest.approx([t_last / 4, t_last / 16, 0.0])
    assert torch.equal(with_tail(base, 0), base)
    net = OracleNet(FLOW)
    sample(FLOW, net, (2, 3, 1, 1), config=SamplerConfig(name=name, num_steps=5, tail_steps=2))
    assert net.calls == (2 * 7 - 1 if name == "heun" else 7)
    seen: dict[int, list[torch.Tensor]] = {0: [], 2: []}
    for tail in seen:
        sample(FLOW, OracleNet(FLOW), (4, 3), config=SamplerConfig(name=name, num_steps=5, tail_steps=tail),
               seeds=range(4), callback=lambda i, x, x0, tail=tail: seen[tail].append(x))
    assert all(torch.equal(a, b) for a, b in zip(seen[0][:4], seen[2][:4]))  # the 4 steps before t_last
    with pytest.raises(ValueError, match="ends at"):
        with_tail([1.0, 0.5, 0.1], 1)


def test_tail_steps_shrink_the_noise_a_denoiser_lets_through():
    """Where the data is a constant (the background outside a head), a denoiser that lets a share k of its input
    through returns k x_t at the last step: from t_last its leak is k x_{t_last}; one tail step first (Euler,
    x_s = x0_hat + (s / t) (x_t - x0_hat)) shrinks the state by k + (1 - k) / 4, and the leak with it."""
    k = 0.1

    def leaky(x, t, cond):
        return k * x  # the data are 0; an exact denoiser returns 0

    x = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    plain = sample_euler(leaky, x, FLOW.timesteps(8))
    tail = sample_euler(leaky, x, with_tail(FLOW.timesteps(8), 1))
    assert torch.allclose(tail, plain * (k + (1 - k) / 4), rtol=1e-5, atol=1e-7)
    assert tail.pow(2).mean().sqrt() < 0.4 * plain.pow(2).mean().sqrt()


def test_tail_steps_are_a_flow_option():
    for name in ("ddpm", "ddim"):
        with pytest.raises(ValueError, match="tail_steps refines a flow grid"):
            SamplerConfig(name=name, tail_steps=1)
    with pytest.raises(ValueError, match="tail_steps must be in 0..8"):
        SamplerConfig(name="heun", tail_steps=-1)
    with pytest.raises(ValueError, match="tail_steps must be in 0..8"):
        SamplerConfig(name="heun", tail_steps=9)


@pytest.mark.parametrize(
    "kind,name,prediction",
    [("ddpm", "ddim", "v"), ("ddpm", "ddpm", "epsilon"), ("ddpm", "ddim", "x0"), ("flow", "heun", "epsilon")],
)
def test_objective_adapter_matches_oracle_denoiser(kind, name, prediction):
    """Net in its own parameterisation and network time -> objective.denoiser -> sampler gives
    the same samples as the closed-form x0 oracle on the sampler grid (time maps are exact)."""
    cfg = ObjectiveConfig(type=kind, prediction=prediction)
    obj = DDPMObjective(cfg) if kind == "ddpm" else FlowMatchingObjective(cfg)
    sc = SamplerConfig(name=name, num_steps=20)
    out = sample(obj, OracleNet(obj), (64, 3, 2), config=sc, seeds=range(64))
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    x = torch.stack([torch.randn(3, 2, generator=g) for g in gens])
    from medidiff.samplers import step_generators  # sample(): per-step noise from generators derived after x_T

    ref = SAMPLERS[name](ddpm_oracle if kind == "ddpm" else flow_oracle, x, obj.timesteps(20),
                         generators=step_generators(gens, "cpu"))
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()


@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 1.0), ("euler", 0.0), ("euler", 1.0)])
def test_per_sample_seeds_batch_independent(name, eta):
    obj = FLOW if name == "euler" else DDPM
    net = OracleNet(obj)
    cfg = SamplerConfig(name=name, num_steps=10, eta=eta)
    batch = sample(obj, net, (3, 3, 2, 2, 2), config=cfg, seeds=[11, 22, 33])
    alone = sample(obj, net, (1, 3, 2, 2, 2), config=cfg, seeds=[22])
    other = sample(obj, net, (2, 3, 2, 2, 2), config=cfg, seeds=[5, 22])
    assert torch.allclose(batch[1], alone[0], atol=1e-6)
    assert torch.allclose(batch[1], other[1], atol=1e-6)
    assert not torch.allclose(batch[0], batch[1])
    again = sample(obj, net, (3, 3, 2, 2, 2), config=cfg, seeds=[11, 22, 33])
    assert torch.equal(batch, again)


def test_wrong_objective_is_a_clear_error():
    with pytest.raises(ValueError, match="euler"):
        sample(FLOW, OracleNet(FLOW), (2, 3), config=SamplerConfig(name="ddpm", num_steps=5))
    with pytest.raises(ValueError, match="ddim"):
        sample(DDPM, OracleNet(DDPM), (2, 3), config=SamplerConfig(name="heun", num_steps=5))
    # grids of the other coordinate are rejected too
    with pytest.raises(ValueError, match="flow-time grid"):
        sample_ddpm(ddpm_oracle, torch.randn(2, 3), FLOW.timesteps(5))
    with pytest.raises(ValueError, match="alpha_bar grid"):
        sample_euler(flow_oracle, torch.randn(2, 3), DDPM.timesteps(5))
    with pytest.raises(ValueError, match="one per sample"):
        sample(DDPM, OracleNet(DDPM), (2, 3), config=SamplerConfig(name="ddim", num_steps=5), seeds=[1])


def test_clip_and_x0_transform_and_callback():
    seen = []
    x = 5 * torch.randn(16, 3)
    sample_euler(
        lambda x, t, c: 3 * x, x, FLOW.timesteps(4), clip_x0=True, x0_transform=lambda v: v * 0.5,
        callback=lambda i, x, x0: seen.append((i, x0.abs().max().item())),
    )
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert all(m <= 0.5 + 1e-6 for _, m in seen)


# ---- classifier-free guidance -------------------------------------------------------------------


class CondNet(nn.Module):
    """Output depends on every conditioning key, nonlinearly in x (so CFG is not trivial)."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.emb = nn.Embedding(num_classes + 1, 3)
        self.calls = 0
        self.batches = []

    def forward(self, x, t, class_labels, scalars, context, context_mask):
        self.calls += 1
        self.batches.append(x.shape[0])
        ctx = (context * context_mask[..., None]).sum((1, 2))  # (B,)
        shift = self.emb(class_labels) + scalars.sum(1, keepdim=True) + ctx[:, None]  # (B, C)
        return torch.tanh(x) * 0.5 + 0.1 * append_dims(shift, x.ndim) + 1e-3 * append_dims(t, x.ndim)


def _cond(b: int):
    return {
        "class_labels": torch.randint(0, 4, (b,)),
        "scalars": torch.randn(b, 2),
        "context": torch.randn(b, 5, 6),
        "context_mask": torch.rand(b, 5) > 0.3,
    }


NULL = {"class_labels": 4}


@pytest.mark.parametrize("obj", [DDPM, FLOW], ids=["ddpm", "flow"])
def test_cfg_scale_one_equals_conditional_and_combines_in_model_space(obj):
    net = CondNet()
    x, cond = torch.randn(6, 3, 2, 2), _cond(6)
    t = torch.full((6,), 0.3, dtype=torch.float64)
    plain = obj.denoiser(net)
    assert torch.equal(obj.denoiser(net, guidance_scale=1.0, null_cond=NULL)(x, t, cond), plain(x, t, cond))
    assert cfg_denoiser(plain, 1.0, NULL) is plain  # no extra forward pass

    scale = 3.0
    net.calls, net.batches = 0, []
    guided = obj.denoiser(net, guidance_scale=scale, null_cond=NULL)(x, t, cond)
    assert net.calls == 1 and net.batches == [12]  # cond + uncond in one forward pass
    # guidance in x0 space == guidance in the network's own space (eps or velocity)
    tn = obj.net_time(t).float()
    out_c = net(x, tn, **cond)
    out_u = net(x, tn, **null_conditions(cond, NULL))
    out_g = out_u + scale * (out_c - out_u)
    if obj.kind == "ddpm":
        expected = convert_prediction(out_g, x, t, obj.prediction, "x0")
    else:
        expected = x - append_dims(t, x.ndim).to(x) * out_g
    assert torch.allclose(guided, expected, atol=1e-5)
    unbatched = cfg_denoiser(plain, scale, NULL, batched=False)(x, t, cond)
    assert torch.allclose(guided, unbatched, atol=1e-6)


def test_guidance_passed_to_sampler_equals_wrapped_denoiser():
    net = CondNet()
    x, cond = torch.randn(4, 3), _cond(4)
    den = FLOW.denoiser(net)
    a = sample_euler(den, x, FLOW.timesteps(5), cond=cond, guidance=Guidance(2.0, NULL))
    b = sample_euler(FLOW.denoiser(net, guidance_scale=2.0, null_cond=NULL), x, FLOW.timesteps(5), cond=cond)
    assert torch.allclose(a, b)


def test_drop_conditions_per_sample_and_null_values():
    cond = _cond(4)
    mask = torch.tensor([True, False, True, False])
    empty = {"context": torch.ones(5, 6), "context_mask": torch.ones(5, dtype=torch.bool), "class_labels": 4}
    out = drop_conditions(cond, mask, empty)
    for k in cond:  # kept samples untouched
        assert torch.equal(out[k][~mask], cond[k][~mask])
    assert (out["class_labels"][mask] == 4).all()
    assert (out["scalars"][mask] == 0).all()
    assert (out["context"][mask] == 1).all() and out["context_mask"][mask].all()
    # default context null: zeros with an all-False mask
    out = drop_conditions(cond, mask, {"class_labels": 4})
    assert (out["context"][mask] == 0).all() and not out["context_mask"][mask].any()
    # only the listed keys are dropped; the mask follows its context
    out = drop_conditions(cond, mask, keys=["context"])
    assert torch.equal(out["class_labels"], cond["class_labels"]) and not out["context_mask"][mask].any()
    cimg = {"cond_image": torch.randn(4, 1, 2, 2, 2)}
    assert (drop_conditions(cimg, mask)["cond_image"][mask] == 0).all()
    with pytest.raises(ValueError, match="null class index"):
        drop_conditions(cond, mask)


def test_step_noise_generators_live_on_the_sampling_device_and_follow_their_seed():
    """Per-step noise is drawn where the sampler runs (no host RNG + copy per step, issue 15),
    from generators that depend on their own sample's seed only."""
    from medidiff.samplers import generators_from_seeds, step_generators

    a = step_generators(generators_from_seeds([7, 8]), "cpu")
    b = step_generators(generators_from_seeds([9, 8]), "cpu")
    assert all(g.device.type == "cpu" for g in a)
    assert a[1].initial_seed() == b[1].initial_seed() != a[0].initial_seed()
    # the starting noise is drawn first from the case's generator: deriving the step generator
    # afterwards leaves it unchanged
    g = generators_from_seeds([7])[0]
    first = torch.randn(4, generator=g)
    assert torch.equal(first, torch.randn(4, generator=generators_from_seeds([7])[0]))
    if torch.cuda.is_available():
        assert step_generators(generators_from_seeds([7]), "cuda")[0].device.type == "cuda"


def test_noise_rows_are_exactly_their_own_generators_draw():
    """Drawn in place into the batch (same device) or drawn elsewhere and copied, row i is
    torch.randn from generators[i] alone, bit for bit."""
    from medidiff.utils.tensor import randn_per_sample

    seeds = [3, 4, 5]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    batch = randn_per_sample((3, 2, 5, 7), gens, device="cpu")
    for s, row in zip(seeds, batch):
        assert torch.equal(row, torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(s)))
    # no device given: the generators' own
    again = randn_per_sample((3, 2, 5, 7), [torch.Generator().manual_seed(s) for s in seeds], device=None)
    assert torch.equal(again, batch)


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_ddpm_step_noise_of_a_case_ignores_the_rest_of_its_batch(name):
    """A denoiser that predicts x0 = 0 makes every step x <- c x + sigma eps: the final state is
    a fixed function of the case's own starting and step noise, so it must be bit-identical
    whatever cases share its batch and wherever it sits in it."""
    from medidiff.samplers import generators_from_seeds, step_generators
    from medidiff.utils.tensor import randn_per_sample

    ts = DDPM.timesteps(6)[:-1]  # stop short of alpha_bar = 1, where x = x0 = 0 and the noise is gone
    zero = lambda x, t, cond: torch.zeros_like(x)  # noqa: E731

    def run(seeds):
        gens = generators_from_seeds(seeds)
        x = randn_per_sample((len(seeds), 2, 4, 4), gens)
        extra = {"eta": 1.0} if name == "ddim" else {}
        return SAMPLERS[name](zero, x, ts, generators=step_generators(gens, "cpu"), **extra)

    alone = run([22])[0]
    assert torch.equal(run([11, 22, 33])[1], alone)
    assert torch.equal(run([22, 7])[0], alone)
    assert not torch.equal(run([21])[0], alone)


@pytest.mark.gpu
def test_ddpm_sampling_on_cuda_never_waits_for_the_host_and_keeps_cases_independent():
    """No host synchronisation inside the sampling loop (torch raises on one in sync-debug
    'error' mode); the per-step noise is drawn on the GPU from per-case generators."""
    from medidiff.samplers import generators_from_seeds, step_generators
    from medidiff.utils.tensor import randn_per_sample

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    dev = torch.device("cuda")
    net = nn.Conv3d(2, 2, 3, padding=1).to(dev)
    den = DDPM.denoiser(lambda x, t, **c: net(x))
    ts = DDPM.timesteps(8)

    def run(seeds):
        gens = generators_from_seeds(seeds)
        x = randn_per_sample((len(seeds), 2, 8, 8, 8), gens, device=dev)
        steps = step_generators(gens, dev)
        den(x, torch.full((len(seeds),), 0.5, dtype=torch.float64, device=dev), {})  # tables copied once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = sample_ddpm(den, x, ts, generators=steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return out.cpu()

    alone = run([22])[0]
    assert torch.allclose(run([11, 22])[1], alone, atol=1e-6)


def test_ddpm_tables_reach_the_sampling_device_once_not_every_step():
    """A table copied from the host at each step is a pageable host-to-device copy, which makes
    the host wait for the GPU once a step (issue 15); it must be copied once per device."""

    class Counting(torch.Tensor):
        moves = 0

        def to(self, *args, **kwargs):
            Counting.moves += 1
            return super().to(*args, **kwargs).as_subclass(torch.Tensor)

    obj = DDPMObjective(ObjectiveConfig(type="ddpm", prediction="v"))
    obj._neg_log_ab = obj._neg_log_ab.as_subclass(Counting)
    obj.alphas_cumprod = obj.alphas_cumprod.as_subclass(Counting)
    sample(obj, OracleNet(obj), (2, 3, 2), config=SamplerConfig(name="ddpm", num_steps=10), seeds=[1, 2])
    obj.loss(OracleNet(obj), torch.zeros(2, 3, 2), generator=torch.Generator().manual_seed(0))
    obj.loss(OracleNet(obj), torch.zeros(2, 3, 2), generator=torch.Generator().manual_seed(1))
    assert Counting.moves == 2  # each table once, for 10 sampler steps and 2 training steps
