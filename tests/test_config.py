"""Strict config loading: types, unknown/missing keys, YAML floats, overrides, hashing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from pathlib import Path

from medidiff.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    from_dict,
    load_config,
    load_yaml,
    save_resolved,
    to_dict,
)
from medidiff.experiment import ExperimentConfig


@dataclass
class Inner:
    lr: float = 1.0e-3
    kind: Literal["a", "b"] = "a"
    size: tuple[int, int, int] = (8, 8, 8)


@dataclass
class Outer:
    required: int
    name: str = "x"
    flag: bool = False
    maybe: int | None = None
    items: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def _write(tmp_path, text: str):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_yaml_reads_exponent_floats_as_floats(tmp_path):
    p = _write(tmp_path, "# comment\nrequired: 1\ninner:\n  lr: 1e-4  # YAML 1.1 would make this a string\n")
    cfg = load_config(p, schema=Outer)
    assert isinstance(cfg.inner.lr, float) and cfg.inner.lr == pytest.approx(1e-4)


def test_quoted_float_is_rejected_with_a_hint(tmp_path):
    p = _write(tmp_path, "required: 1\ninner:\n  lr: '1e-4'\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, schema=Outer)
    msg = str(err.value)
    assert str(p) in msg and "inner.lr" in msg and "quotes" in msg


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = _write(tmp_path, "required: 1\ninner:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, schema=Outer)
    msg = str(err.value)
    assert str(p) in msg and "inner.lrr" in msg and "did you mean inner.lr" in msg


def test_missing_required_key(tmp_path):
    p = _write(tmp_path, "name: y\n")
    with pytest.raises(ConfigError, match=r"missing required key required"):
        load_config(p, schema=Outer)


@pytest.mark.parametrize(
    "text, key",
    [
        ("required: '3'", "required"),
        ("required: 1.5", "required"),
        ("required: true", "required"),
        ("required: 1\nflag: 1", "flag"),
        ("required: 1\ninner: {kind: c}", "inner.kind"),
        ("required: 1\ninner: {size: [1, 2]}", "inner.size"),
        ("required: 1\nitems: [a, 3]", "items[1]"),
        ("required: 1\ninner: 5", "inner"),
    ],
)
def test_wrong_types_name_the_key(tmp_path, text, key):
    p = _write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, schema=Outer)
    assert key in str(err.value) and str(p) in str(err.value)


def test_int_is_accepted_for_float_and_tuple_converted():
    cfg = from_dict(Outer, {"required": 2, "inner": {"lr": 1, "size": [1, 2, 3]}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.size == (1, 2, 3)


def test_overrides_are_typed_and_validated(tmp_path):
    p = _write(tmp_path, "required: 1\n")
    cfg = load_config(p, ["inner.lr=2e-5", "inner.kind=b", "maybe=null", "items=[u, v]"], schema=Outer)
    assert cfg.inner.lr == pytest.approx(2e-5) and cfg.inner.kind == "b"
    assert cfg.maybe is None and cfg.items == ["u", "v"]
    with pytest.raises(ConfigError, match="inner.nope"):
        load_config(p, ["inner.nope=1"], schema=Outer)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(p, ["inner.lr"], schema=Outer)
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_training_budget_and_compile_mode_are_validated():
    from medidiff.experiment import ExperimentConfig

    cfg = load_config(None, ["train.max_minutes=2.5", "train.compile=true", "train.compile_mode=reduce-overhead"],
                      schema=ExperimentConfig)
    assert cfg.train.max_minutes == 2.5 and cfg.train.compile_mode == "reduce-overhead"
    # compile: false alone turns a recipe's compiling off (the mode is used only with compile: true)
    off = load_config(None, ["train.compile=false", "train.compile_mode=reduce-overhead"], schema=ExperimentConfig)
    assert not off.train.compile
    with pytest.raises(ConfigError, match="max_minutes must be >= 0"):
        load_config(None, ["train.max_minutes=-1"], schema=ExperimentConfig)
    with pytest.raises(ConfigError, match="num_workers must be >= 0"):
        load_config(None, ["data.num_workers=-2"], schema=ExperimentConfig)


def test_round_trip_and_hash(tmp_path):
    cfg = from_dict(Outer, {"required": 3, "inner": {"size": [4, 4, 4]}})
    again = from_dict(Outer, to_dict(cfg))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    other = from_dict(Outer, {"required": 4})
    assert config_hash(other) != config_hash(cfg)
    out = save_resolved(cfg, tmp_path / "run")
    assert from_dict(Outer, load_yaml(out)) == cfg
    assert config_hash(cfg) in out.read_text().splitlines()[0]


def test_experiment_config_defaults_and_cross_field_checks(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, ExperimentConfig)
    with pytest.raises(ConfigError, match="percentiles"):
        load_config(None, ["data.percentiles=[99, 1]"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = _write(tmp_path, "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_experiment_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig) and cfg.name


def test_config_changes_names_differing_keys_and_reads_a_missing_one_as_its_default():
    from medidiff.config import config_changes

    before = {"seed": 0, "train": {"lr": 1e-4, "max_steps": 10}}
    now = {"seed": 0, "train": {"lr": 1e-4, "max_steps": 20}, "objective": {"edge_weight": 1.0}}
    defaults = {"objective": {"edge_weight": 1.0}}
    assert config_changes(before, now, defaults) == ["train.max_steps"]
    assert config_changes(before, now, defaults, ("train.max_steps",)) == []
    assert config_changes(before, now, defaults, ("train.",)) == []  # a prefix
    assert config_changes(before, now, {}) == ["objective.edge_weight", "train.max_steps"]  # no default known
    now["objective"]["edge_weight"] = 3.0
    assert config_changes(before, now, defaults, ("train.",)) == ["objective.edge_weight"]
    assert config_changes(now, before, defaults, ("train.",)) == ["objective.edge_weight"]  # removed: a change too


def test_a_new_setting_at_its_default_leaves_config_hashes_as_they_were():
    """Generated cases record their model's config hash and `generate` compares it to resume a folder: a setting
    added since (config.HASH_SKIPS_DEFAULT) counts only where it is set, so the shipped model keeps the hash the
    code before eval.intensity_scale gave it (session 58; the model shipped until then pinned 858512c52e164c06)."""
    from dataclasses import replace

    from medidiff.config import config_hash
    from medidiff.generation import KIND, read_model_config
    from medidiff.pretrained import model_path

    cfg, _ = read_model_config(model_path("anatomy-2mm"), KIND)
    assert config_hash(cfg) == "53615d71db85ea79"
    assert config_hash(replace(cfg, sampler=replace(cfg.sampler, tail_steps=1))) != config_hash(cfg)
    assert config_hash(replace(cfg, eval=replace(cfg.eval, realism_max_real=192))) != config_hash(cfg)
    assert config_hash(replace(cfg, eval=replace(cfg.eval, intensity_scale="config"))) != config_hash(cfg)
    assert config_hash(replace(cfg, train=replace(cfg.train, decay_fraction=0.3))) != config_hash(cfg)
    assert config_hash(replace(cfg, eval=replace(cfg.eval, utility_match_tumour_free=True))) != config_hash(cfg)
    assert config_hash(replace(cfg, eval=replace(cfg.eval, save_predictions=True))) != config_hash(cfg)
