"""Configuration files: YAML read into the frozen dataclasses of :mod:`ssdlite.config.schema`.

A config is a tree of frozen dataclasses (:class:`Config` at the root). Files are read with
PyYAML's safe loader (no python tags), with two changes: ``1e-3`` and ``1e6`` are numbers (as
in YAML 1.2; YAML 1.1 reads them as strings) and a key repeated in one mapping is an error
(instead of the last one silently winning). Every key must be a field of its section (unknown
keys are errors that list the valid ones), every value is checked against the field's type and
range, ``key=value`` overrides (``--set`` on every tool) are applied before validation, and
:func:`load_config` checks the backbone name against ``backbones.list_backbones()``.

The resolved config is stored in every checkpoint as a plain dict (:func:`to_dict`) so a
checkpoint rebuilds its model with no config file (:func:`from_dict`).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ssdlite.config.schema import Config, ConfigError, check_values

__all__ = [
    "load_config", "from_dict", "to_dict", "apply_overrides", "check_backbone_name", "migrate", "trained_config",
    "MOVED_KEYS", "FIXED_BY_TRAINING",
]

# Keys that moved (old -> new). Files written before a move (checkpoints, ONNX metadata, YAML)
# still load: :func:`migrate` renames them, and ``--set old=...`` means ``--set new=...``.
MOVED_KEYS: dict[str, str] = {
    "loss.classification": "model.classification",
    "loss.box_weights": "model.box_weights",
}

# What training fixes: every key of these sections or keys (so a new model key is covered
# without being listed). A trained model (checkpoint or ONNX file) refuses an override that
# changes one of them: its outputs would no longer mean what the rest of the code reads in them.
FIXED_BY_TRAINING: tuple[str, ...] = ("model", "preprocess.mean", "preprocess.std")


# ----------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float and refuses repeated keys."""


# copy the resolver table before adding to it (add_implicit_resolver would append to SafeLoader's lists)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),  # 1e6, 1e-3, 2.5E+2 (YAML 1.2 floats)
    list("-+0123456789"),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:  # the mapping's own keys: a key merged in with << may be overridden
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # unhashable key: construct_mapping reports it
            pass
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# ----------------------------------------------------------------------------- dict <-> dataclass


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {sorted(_field_types(tp))}, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - programming error


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    fields = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys in {prefix.rstrip('.') or 'the top level'}: {sorted(fields)}"
        )
    kwargs = {k: _convert(v, fields[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists for tuples) of a config; ``from_dict(to_dict(c)) == c``."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def from_dict(data: dict, overrides: Sequence[str] = ()) -> Config:
    """Build and validate a :class:`Config` from a nested dict (old keys migrated) plus ``key=value`` overrides."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping at the top level, got {type(data).__name__}")
    data = apply_overrides(migrate(data), overrides)
    cfg = _build(Config, data)
    check_values(cfg)
    return cfg


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``data`` with ``a.b.c=value`` overrides applied (value parsed as YAML)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.lr=0.01")
        key, raw = item.split("=", 1)
        key = MOVED_KEYS.get(key.strip(), key.strip())
        try:
            value = _yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
        _check_key_path(key)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
        node[parts[-1]] = value
    return data


def _check_key_path(key: str) -> None:
    cls: Any = Config
    prefix = ""
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"unknown key {key}: {prefix.rstrip('.')} is a value, not a section")
        fields = _field_types(cls)
        if part not in fields:
            raise ConfigError(f"unknown key {prefix}{part}; valid keys in {prefix.rstrip('.') or 'the top level'}: {sorted(fields)}")
        cls = fields[part]
        prefix += part + "."


def migrate(data: dict) -> dict:
    """A copy of a config dict with every :data:`MOVED_KEYS` entry under its new name.

    Raises :class:`ConfigError` naming both keys when the old and the new one are both given
    with different values. Anything else is left for validation.
    """
    data = copy.deepcopy(data)
    for old, new in MOVED_KEYS.items():
        *old_path, old_leaf = old.split(".")
        parent = _section(data, old_path)
        if parent is None or old_leaf not in parent:
            continue
        value = parent.pop(old_leaf)
        if not parent and old_path:
            _section(data, old_path[:-1]).pop(old_path[-1])  # drop a section the move emptied
        *new_path, new_leaf = new.split(".")
        target = data
        for part in new_path:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{part} must be a mapping (it receives {old}, now {new})")
        if new_leaf in target and target[new_leaf] != value:
            raise ConfigError(f"{old}={value!r} and {new}={target[new_leaf]!r} disagree: {old} is the old name of {new}; keep {new} only")
        target.setdefault(new_leaf, value)
    return data


def _warn_moved(data: dict, path: Path) -> None:
    """A ``FutureWarning`` for each old key name a config file uses (it is read under its new name)."""
    import warnings

    for old, new in MOVED_KEYS.items():
        *old_path, leaf = old.split(".")
        parent = _section(data, old_path)
        if parent is not None and leaf in parent:
            warnings.warn(f"{path}: {old} is now {new} (read as such); rename it in the file", FutureWarning, stacklevel=3)


def _section(data: dict, path: Sequence[str]) -> dict | None:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if isinstance(d, dict):
        return {k: v for key, sub in d.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): d}


def trained_config(stored: dict, overrides: Sequence[str], source: str) -> Config:
    """The config stored with a trained model (a checkpoint's or an ONNX file's), with ``key=value`` overrides.

    An override that changes a key of :data:`FIXED_BY_TRAINING` (the model section, the input
    normalization) is refused with a :class:`ConfigError` naming ``source`` and the key: the
    network's outputs would be read with other anchors, box weights, score function or classes
    than it was trained for, and every box would be silently wrong. Thresholds (``postprocess.*``),
    data paths and the like may change.
    """
    base = to_dict(from_dict(stored))
    wanted = apply_overrides(base, overrides)  # checked before validation: the first error names the fixed key
    before, after = _flat(base), _flat(wanted)
    fixed = [k for k in before if any(k == f or k.startswith(f + ".") for f in FIXED_BY_TRAINING)]
    changed = [k for k in fixed if after.get(k) != before[k]]
    if changed:
        key = changed[0]
        more = f" (and {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise ConfigError(
            f"{source}: {key} is fixed by the trained model ({before[key]!r}) and cannot be overridden{more}: "
            f"with {after.get(key)!r} its outputs would no longer mean what it learned"
        )
    return from_dict(wanted)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``yaml.safe_load``), apply ``key=value`` overrides and validate.

    Relative data paths stay as written (relative to the working directory), as users type them.
    Raises :class:`ConfigError` (a ``ValueError``) naming the file and the key on any problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as e:
        hint = " (python tags are refused: a config is plain data)" if "python/" in str(e) else ""
        detail = " ".join(str(e).replace('in "<unicode string>", ', "").split())
        raise ConfigError(f"{path}: not valid YAML{hint}: {detail}") from None
    if data is None:
        data = {}
    _warn_moved(data, path)
    try:
        cfg = from_dict(data, overrides)
        check_backbone_name(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def check_backbone_name(cfg: Config) -> None:
    """``ConfigError`` listing the valid names unless ``model.backbone.name`` is registered (or ``timm:<model>``).

    Imports :mod:`backbones` (and so torch); :func:`from_dict` does not call it, so a stored
    config can be read where torch is absent (the ONNX Runtime back end).
    """
    name = cfg.model.backbone.name
    if name.startswith("timm:") and len(name) > len("timm:"):
        return
    import backbones

    names = backbones.list_backbones()
    if name not in names:
        raise ConfigError(f"model.backbone.name={name!r} is not a known backbone; choose one of {names} or 'timm:<model>'")


