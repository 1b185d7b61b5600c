"""Typed configurations: a dataclass of sections (each a dataclass of typed keys), read from a
YAML file or a dict and changed by ``section.key=value`` overrides.  Every command that takes a
configuration (``train``, ``train-ann``, ``convert``) parses it here, so a typo or a bad value
fails before any work starts, with a message naming the key and the allowed values.

A field's ``metadata={"choices": (...)}`` restricts it to those values; ``X | None`` accepts
``null``; a ``dict`` field takes nested keys (``model.kwargs.width=[32,64,128]``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

__all__ = ["config_to_dict", "parse_override", "read_config", "set_values"]

C = TypeVar("C")

_FLOAT32_MAX = 3.4028234663852886e38


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(where: str, owner: type, f: dataclasses.Field, value: Any):
    """Check ``value`` against the field's type (ints are accepted for floats) and choices."""
    tp = typing.get_type_hints(owner)[f.name]
    optional = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be empty (null); give a {tp.__name__}")
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        # nan passes every `<`/`>` range check and inf (or > float32's max) breaks the optimizer
        if ok and not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):
            raise ConfigError(f"{where} must be a finite number within float32's range, got {value!r}")
    elif tp is str:
        if isinstance(value, bool) and "on" in f.metadata.get("choices", ()):
            value = "on" if value else "off"  # YAML reads on/off/yes/no as booleans
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        value = str(value) if ok else value
    elif tp is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(
            f"{where} must be {'an' if tp is int else 'a'} {tp.__name__}{' or null' if optional else ''}, "
            f"got {value!r} "
            f"({type(value).__name__})"
        )
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not allowed; allowed values: {', '.join(choices)}")
    return value


def _set(cfg, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    section = parts[0]
    sections = [f.name for f in dataclasses.fields(cfg)]
    if section not in sections:
        raise ConfigError(
            f"unknown config section {section!r} in {dotted!r}; sections: {', '.join(sections)}"
        )
    sec = getattr(cfg, section)
    names = [f.name for f in dataclasses.fields(sec)]
    if len(parts) == 1:
        if not isinstance(value, dict):
            raise ConfigError(f"{section} must be a mapping of {', '.join(names)}")
        for k, v in value.items():
            _set(cfg, f"{section}.{k}", v)
        return
    key = parts[1]
    if key not in names:
        raise ConfigError(f"unknown key {section}.{key}; keys of {section}: {', '.join(names)}")
    f = next(f for f in dataclasses.fields(sec) if f.name == key)
    if len(parts) > 2:  # model.kwargs.width=[...]
        if typing.get_type_hints(type(sec))[key] is not dict:
            raise ConfigError(f"{section}.{key} is not a mapping; cannot set {dotted}")
        getattr(sec, key)[".".join(parts[2:])] = copy.deepcopy(value)
        return
    setattr(sec, key, _coerce(f"{section}.{key}", type(sec), f, copy.deepcopy(value)))


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)``; the value is read as YAML (numbers, true/false,
    null, lists ``[32,64,128]``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value (e.g. optim.lr=0.05)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: cannot read the value {raw!r} ({e})") from e
    return key.strip(), value


def set_values(cfg, overrides: list[str] | dict | None) -> None:
    """Apply ``section.key=value`` strings (values read as YAML) or a ``{dotted key: value}`` dict;
    a bare section name takes a mapping of its keys."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in items:
        _set(cfg, key, value)


def read_config(
    cls: type[C], source: str | os.PathLike | dict | None = None, *, defaults: dict | None = None
) -> C:
    """``cls()`` with ``defaults`` and then ``source`` (a YAML file of sections, or a dict) set on it
    (not yet validated: the caller's overrides and checks follow)."""
    cfg = cls()
    set_values(cfg, defaults)
    data = source
    if source is not None and not isinstance(source, dict):
        path = Path(source)
        if not path.is_file():
            hint = (
                ", ".join(sorted(p.name for p in Path("configs").glob("*.yaml")))
                if Path("configs").is_dir()
                else ""
            )
            raise ConfigError(f"config file {path} not found" + (f"; configs/ holds {hint}" if hint else ""))
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from e
        if not isinstance(data, dict):
            sections = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{path} must hold a mapping of sections ({sections})")
    set_values(cfg, {str(section): values for section, values in (data or {}).items()})
    return cfg
