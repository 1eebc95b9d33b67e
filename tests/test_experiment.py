"""Cross-section checks of the experiment config (issue 21): combinations that used to load and then
sample wrong or stall are refused when the config is built, and the refusals match what an exact
denoiser's samples show.

Gaussian data x0 ~ N(mu, diag(s^2)) has the exact denoiser E[x0 | x_t] in closed form; a net that
is that denoiser plus a small error in its own parameterisation stands for a well-trained model.
The sample mean is the assertion: configurations the loader accepts reproduce the data mean,
the one it refuses does not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from medidiff.cli.main import main
from medidiff.config import ConfigError, load_config, parse_override
from medidiff.objectives import DDPMObjective, ObjectiveConfig, convert_prediction
from medidiff.samplers import SamplerConfig, sample
from medidiff.utils.tensor import append_dims

MU = torch.tensor([1.0, -0.5])
S = torch.tensor([0.5, 0.3])
N = 4000
NET_ERROR = 0.01  # a well-trained net is this far off, in its own output


def gaussian_x0(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """E[x0 | x_t] for x_t = sqrt(ab) x0 + sqrt(1 - ab) eps. x (B, 2)."""
    a, b2 = append_dims(ab.sqrt(), x.ndim).to(x), append_dims(1 - ab, x.ndim).to(x)
    mu, s2 = MU.to(x), S.to(x) ** 2
    return mu + a * s2 / (a**2 * s2 + b2) * (x - a * mu)


class NearlyExactNet(nn.Module):
    """The exact denoiser in the objective's parameterisation, plus ``error`` on every output."""

    def __init__(self, objective: DDPMObjective, error: float) -> None:
        super().__init__()
        self.objective, self.error = objective, error

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        ab = self.objective.alpha_bar(t)
        x64 = x.double()
        out = convert_prediction(gaussian_x0(x64, ab), x64, ab, "x0", self.objective.prediction)
        return (out + self.error).to(x.dtype)


def _sample_mean(overrides: list[str]) -> torch.Tensor:
    """Mean of N samples of the nearly exact net under the overrides' objective and sampler sections
    (built section by section, so the refused combination can be sampled too)."""
    obj_cfg = ObjectiveConfig(**_section(overrides, "objective"))
    sampler = SamplerConfig(**_section(overrides, "sampler"))
    obj = DDPMObjective(obj_cfg)
    torch.manual_seed(0)
    out = sample(obj, NearlyExactNet(obj, NET_ERROR), (N, 2), config=sampler, dtype=torch.float64)
    return out.mean(0)


def _section(overrides: list[str], name: str) -> dict:
    return {key.split(".", 1)[1]: value for key, value in map(parse_override, overrides)
            if key.startswith(name + ".")}


COSINE_EPS_TRAILING = ["objective.schedule=cosine"]  # prediction epsilon, ddim on trailing: the defaults
ACCEPTED = [
    [],  # linear schedule
    ["objective.schedule=scaled_linear"],
    ["objective.schedule=cosine", "objective.prediction=v"],
    ["objective.schedule=cosine", "sampler.spacing=leading"],
]


@pytest.mark.parametrize("overrides", ACCEPTED, ids=lambda o: " ".join(o) or "defaults")
def test_accepted_ddpm_combinations_reproduce_the_data_mean(overrides):
    load_config(None, overrides)  # accepted
    mean = _sample_mean(overrides)
    # Monte-Carlo (4 standard errors) + the net's error passed through a sane grid + the
    # schedule's own terminal-SNR leak (sqrt(alpha_bar[T-1]) mu: 0.07 for scaled_linear)
    assert ((mean - MU).abs() < 4 * S / N**0.5 + 0.1).all(), (overrides, mean)


def test_cosine_epsilon_trailing_is_refused_and_samples_prove_why():
    with pytest.raises(ConfigError) as err:
        load_config(None, COSINE_EPS_TRAILING)
    msg = str(err.value)
    assert "\n" not in msg
    for key in ("objective.prediction", "objective.schedule", "sampler.spacing", "objective.prediction: v",
                "sampler.spacing: leading"):
        assert key in msg, msg
    # what the loader spares the user: the first step multiplies the 1% net error by ~630
    mean = _sample_mean(COSINE_EPS_TRAILING)
    assert ((mean - MU).abs() > 1.0).any(), mean


def test_cosine_epsilon_is_refused_even_at_1000_steps():
    # trailing or leading, 1000 steps include t = T-1 (gain 32): no grid fix exists, only v
    with pytest.raises(ConfigError, match="objective.prediction: v") as err:
        load_config(None, ["objective.schedule=cosine", "sampler.num_steps=1000", "sampler.spacing=leading"])
    assert "spacing: leading" not in str(err.value)


def test_sampler_must_suit_the_objective_at_load():
    with pytest.raises(ConfigError, match=r"sampler.name.*objective.type is 'flow'.*\['euler', 'heun'\]"):
        load_config(None, ["objective.type=flow"])  # default sampler ddim
    with pytest.raises(ConfigError, match=r"objective.type is 'ddpm'.*\['ddim', 'ddpm'\]"):
        load_config(None, ["sampler.name=heun"])
    with pytest.raises(ConfigError, match="sampler.num_steps"):
        load_config(None, ["sampler.num_steps=1001"])
    load_config(None, ["objective.type=flow", "sampler.name=heun"])
    # the VAE stage samples nothing: its (unused) sampler section is not checked
    load_config(None, ["stage=vae", "objective.type=flow"])


MASK = ["data.label_mode=regions", "conditioning.mask=true"]
SR = ["stage=sr"]


@pytest.mark.parametrize("kind", [MASK, SR], ids=["mask", "sr"])
def test_guidance_needs_condition_dropout(kind):
    with pytest.raises(ConfigError, match=r"sampler.guidance_scale 3 .*objective.cond_drop_prob is 0"):
        load_config(None, [*kind, "objective.type=flow", "sampler.name=euler", "sampler.guidance_scale=3"])
    load_config(None, [*kind, "objective.type=flow", "sampler.name=euler", "sampler.guidance_scale=3",
                       "objective.cond_drop_prob=0.1"])
    # dropout of keys this model does not have trains no unconditional branch either
    with pytest.raises(ConfigError, match=r"cond_drop_keys \['class_labels'\] names none"):
        load_config(None, [*kind, "objective.type=flow", "sampler.name=euler", "sampler.guidance_scale=3",
                           "objective.cond_drop_prob=0.1", "objective.cond_drop_keys=[class_labels]"])


def test_guidance_needs_text_dropout_and_some_condition():
    text = ["conditioning.text.encoder=/some/clip", "data.flip_prob=0", "sampler.guidance_scale=3"]
    with pytest.raises(ConfigError, match="cond_drop_prob is 0"):
        load_config(None, text)
    load_config(None, [*text, "objective.cond_drop_prob=0.15", "objective.cond_drop_keys=[context]"])
    with pytest.raises(ConfigError, match="has none"):
        load_config(None, ["sampler.guidance_scale=3", "objective.cond_drop_prob=0.1"])


def test_misspelt_cond_drop_key_is_refused():
    with pytest.raises(ConfigError, match=r"objective: cond_drop_keys \['cond_img'\]: unknown"):
        load_config(None, ["objective.cond_drop_keys=[cond_img]"])


def test_image_channel_keys_the_model_lacks_are_refused_at_config_time():
    """objective.detail_weights / x0_skip_sigmas name image channels: a misspelt or absent one (t2w in a t1n model,
    WT without generated labels) is refused by load_config, before a run claims its folder and fits the data."""
    flow = ["objective.type=flow", "objective.flow_target=x0", "sampler.name=euler"]
    for key in ("detail_weights", "x0_skip_sigmas"):
        with pytest.raises(ConfigError, match=rf"objective.{key} names \['T1n'\]"):
            load_config(None, [*flow, f"objective.{key}={{T1n: 0.5}}"])
        with pytest.raises(ConfigError, match=r"names \['WT'\].*\['t1n'\]"):
            load_config(None, [*flow, "data.modalities=[t1n]", f"objective.{key}={{WT: 0.5}}"])
        cfg = load_config(None, [*flow, "data.label_mode=regions", "conditioning.generate_labels=true",
                                 f"objective.{key}={{t1n: 0.5, WT: 0.5}}"])
        assert getattr(cfg.objective, key) == {"t1n": 0.5, "WT": 0.5}


def test_check_sampler_covers_a_sampler_given_later():
    """What `generate --sampler/--steps/--guidance` passes to the pipelines is checked the same way."""
    cfg = load_config(None, ["objective.schedule=cosine", "sampler.spacing=leading"])
    cfg.check_sampler(cfg.sampler)
    with pytest.raises(ConfigError, match="multiplies the network's error"):
        cfg.check_sampler(dataclasses.replace(cfg.sampler, spacing="trailing"))
    with pytest.raises(ConfigError, match="sampler.name"):
        cfg.check_sampler(SamplerConfig(name="euler"))


def test_train_dry_run_reaches_the_checks(tmp_path, capsys):
    cfg = tmp_path / "cosine.yaml"
    cfg.write_text("objective:\n  schedule: cosine\n")
    assert main(["train", "-c", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg) in err and "objective.prediction: v" in err
    assert main(["train", "-c", str(cfg), "--set", "objective.prediction=v", "--dry-run"]) == 0
    shipped = Path(__file__).resolve().parents[1] / "configs" / "wavelet_flow.yaml"
    assert main(["train", "-c", str(shipped), "--set", "sampler.name=ddpm", "--dry-run"]) == 2
    assert "use sampler.name one of ['euler', 'heun']" in capsys.readouterr().err
    # DeepSpeed's refusals come before any data is read, too: the anatomy recipe's CUDA graphs with ZeRO-1 and
    # accumulation
    anatomy = shipped.parent / "anatomy_2mm.yaml"
    args = ["train", "-c", str(anatomy), "--set", "train.deepspeed=zero1", "--set", "train.grad_accum=2", "--dry-run"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ZeRO stage 1" in err and "CUDA graphs" in err
    assert main([*args[:-3], "--set", "train.grad_accum=1", "--dry-run"]) == 0
