"""Typed configuration: dataclass schemas, strict YAML loading, dotted overrides.

Every section of an experiment is a plain dataclass that lives beside the code it configures
(``medidiff/data/config.py`` and so on). This module only knows how to turn a YAML mapping into
such a dataclass, strictly:

* unknown keys are errors (with a "did you mean" hint), never ignored;
* missing required keys are errors;
* values are type-checked against the annotations (``int``, ``float``, ``bool``, ``str``,
  ``Literal``, ``Optional``, ``list``, ``tuple``, ``dict``, nested dataclasses);
* every error names the dotted key and the file it came from.

YAML 1.1 (PyYAML's default) reads ``lr: 1e-4`` as the *string* '1e-4'. Our loader resolves floats
with the YAML 1.2 rule instead, so ``1e-4`` is the float users meant; a float-looking string that
still reaches a float field (``lr: "1e-4"``) is rejected with an explanation.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from medidiff.errors import MedidiffError

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "from_dict",
    "to_dict",
    "flatten",
    "load_yaml",
    "load_config",
    "apply_overrides",
    "parse_override",
    "dump_yaml",
    "config_hash",
    "save_resolved",
]


class ConfigError(MedidiffError, ValueError):
    """A configuration problem; the message names the key and the file."""


# --------------------------------------------------------------------------------------------
# YAML with YAML-1.2 floats
# --------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.2), as users expect."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
# Replace the float resolver: copy the table so SafeLoader itself is untouched.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (empty file -> ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``train.lr=1e-4`` gives a float)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.micro_batch=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key segment")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""  # noqa: S506
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from exc
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``KEY=VALUE`` overrides applied.

    Missing intermediate sections are created; whether the key exists in the schema is checked
    later by :func:`from_dict`, which names the override as the source.
    """
    out = json.loads(json.dumps(data, default=str)) if data else {}
    for text in overrides or []:
        key, value = parse_override(text)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"override {text!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node = nxt
        node[parts[-1]] = value
    return out


# --------------------------------------------------------------------------------------------
# Typed conversion
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(tp) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _fail(where: str, source: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {msg}")


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(where, source, f"must not be null (expected {_type_name(tp)})")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own error names the key inside it (log.mlflow.tracking_uri)
            return _convert(value, options[0], where, source)
        for arg in options:
            try:
                return _convert(value, arg, where, source)
            except ConfigError:
                pass
        raise _fail(where, source, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices if c == value):
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _fail(where, source, f"must be one of {list(choices)}, got {value!r}{extra}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _fail(where, source, f"expected a mapping (section {tp.__name__}), got {value!r}")
        return from_dict(tp, value, where=where, source=source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(where, source, f"expected a list ({_type_name(tp)}), got {value!r}")
        args = get_args(tp)
        if origin is list:
            return [_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(where, source, f"expected {len(args)} values ({_type_name(tp)}), got {len(value)}: {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, source, f"expected a mapping, got {value!r}")
        kt, vt = get_args(tp)
        return {
            _convert(k, kt, f"{where}.<key>", source): _convert(v, vt, f"{where}.{k}", source)
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, source, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, source, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
                hint = " (it is quoted, so YAML reads it as a string: remove the quotes)"
            raise _fail(where, source, f"expected a number, got {value!r}{hint}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, source, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"config schema uses unsupported type {tp!r} at {where}")


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "", source: str = "<config>") -> T:
    """Build dataclass ``cls`` from ``data``, strictly (see module docstring)."""
    if not isinstance(data, dict):
        raise _fail(where or cls.__name__, source, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = [k for k in data if k not in fields]
    if unknown:
        msgs = []
        for k in unknown:
            hint = difflib.get_close_matches(str(k), list(fields), n=1)
            msgs.append(f"{prefix}{k}" + (f" (did you mean {prefix}{hint[0]}?)" if hint else ""))
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(msgs)}; allowed in {where or 'the top level'}: "
            f"{', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key {key} ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ cross-field checks
        raise ConfigError(f"{source}: {where or cls.__name__}: {exc}") from exc


def to_dict(cfg: Any) -> Any:
    """Plain (JSON/YAML-serialisable) form of a config dataclass; tuples become lists."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}`` (lists stay values; an empty section
    disappears)."""
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    return {k: v for key, value in d.items() for k, v in flatten(value, f"{prefix}{key}.").items()}


def config_changes(before: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any],
                   ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two saved configs (nested dicts), sorted, except
    ``ignore`` (a key, or a prefix ending in "."). A key ``before`` does not record was added to
    medidiff after it was saved: it compares as its value in ``defaults`` (new settings default to
    the old behaviour), so an upgrade alone changes nothing."""
    old, new = flatten(before), flatten(now)
    flat_defaults = flatten(defaults)
    old |= {k: flat_defaults[k] for k in new.keys() - old.keys() if k in flat_defaults}
    return [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)
            and not any(k == a or (a.endswith(".") and k.startswith(a)) for a in ignore)]


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


# Settings added after config hashes were recorded (generated cases' provenance, which `generate` compares to resume
# a folder): left out of the hash while they hold their default, so an upgrade alone changes no model's hash.
HASH_SKIPS_DEFAULT: dict[tuple[str, str], Any] = {("sampler", "tail_steps"): 0, ("eval", "realism_max_real"): None,
                                                   ("eval", "intensity_scale"): "brain",
                                                   ("train", "decay_fraction"): 0.2, ("eval", "subset_seed"): 0,
                                                   ("eval", "utility_match_tumour_free"): False,
                                                   ("eval", "save_predictions"): False}


def config_hash(cfg: Any) -> str:
    """Stable short hash of a resolved config (sha256 of canonical JSON, 16 hex digits); the settings in
    HASH_SKIPS_DEFAULT count only where they differ from their default."""
    data = to_dict(cfg)
    for (section, key), default in HASH_SKIPS_DEFAULT.items():
        part = data.get(section)
        if isinstance(part, dict) and key in part and part[key] == default:
            data = {**data, section: {k: v for k, v in part.items() if k != key}}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, schema: type[T] | None = None
) -> T:
    """Load ``path`` (or nothing), apply ``--set`` overrides, and validate against ``schema``.

    ``schema`` defaults to :class:`medidiff.experiment.ExperimentConfig`.
    """
    if schema is None:
        from medidiff.experiment import ExperimentConfig

        schema = ExperimentConfig  # type: ignore[assignment]
    data = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " + --set " + " ".join(overrides)
    data = apply_overrides(data, overrides)
    return from_dict(schema, data, source=source)  # type: ignore[arg-type]


def save_resolved(cfg: Any, run_dir: str | Path, name: str = "resolved_config.yaml") -> Path:
    """Write the resolved config (with its hash as a comment) into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / name
    out.write_text(f"# medidiff resolved config, hash {config_hash(cfg)}\n" + dump_yaml(cfg))
    return out
