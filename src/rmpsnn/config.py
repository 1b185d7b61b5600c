"""Typed configurations: a dataclass of sections (each a dataclass of typed keys), read from a
YAML file or a dict and changed by ``section.key=value`` overrides.  Every command that takes a
configuration (``train``, ``train-ann``, ``convert``) parses it here, so a typo or a bad value
fails before any work starts, with a message naming the key and the allowed values.

Each key is declared once, with :func:`option`: its type (the annotation), default, help text,
check (:func:`at_least`, :func:`above`, :func:`in_range`), choices (a tuple, or a function that
reads a registry when the value is checked, so that a user's plugin counts) and the command-line
flags that are shorthands for it.  The YAML keys, the ``section.key=value`` overrides, the
command line's flags and their ``--help`` (:mod:`rmpsnn.cli`) all derive from that declaration.
``X | None`` accepts ``null``; a ``dict`` field takes nested keys (``model.kwargs.width=[32,64]``).

This module imports neither torch nor the model zoo, so the command line can build its options
at once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

__all__ = [
    "above",
    "at_least",
    "check_fields",
    "coerce_field",
    "config_to_dict",
    "imports_option",
    "in_range",
    "option",
    "parse_override",
    "read_config",
    "set_values",
]

C = TypeVar("C")

_FLOAT32_MAX = 3.4028234663852886e38


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- declarations
class Check:
    """A range check on a number: ``test(value)`` is true for good values; ``text`` says what
    they are ("must be >= 1")."""

    def __init__(self, test: Callable[[Any], bool], text: str) -> None:
        self.test, self.text = test, text

    def __call__(self, where: str, value: Any) -> None:
        if value is not None and not self.test(value):
            raise ConfigError(f"{where} {self.text}, got {value!r}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f"must be >= {_num(low)}")


def above(low: float) -> Check:
    return Check(lambda v: v > low, f"must be > {_num(low)}")


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """``[low, high]``, with either end open."""
    text = f"must be in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    return Check(
        lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high), text
    )


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    check: Check | None = None,
    choices: tuple | Callable[[], list[str]] | None = None,
    choices_help: str | None = None,
    flags: tuple[str, ...] = (),
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """One configuration key: a dataclass field whose metadata the config reader, the checks and
    the command line read.  ``choices`` is a tuple, or a function returning the allowed names
    (read when a value is checked: a registry filled by a user's ``--import`` counts);
    ``choices_help`` stands for such a list in ``--help``; ``flags`` are shorthand options
    (``("--epochs",)``) that set this key."""
    meta = {"help": help, "check": check, "choices": choices, "choices_help": choices_help, "flags": flags}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def imports_option(help: str) -> Any:
    """The key that lists user modules or ``.py`` files (:mod:`rmpsnn.plugins`): each value set
    is imported at once and added to the list (a run keeps every plugin it was given)."""
    field = option(default_factory=list, help=help)
    return dataclasses.field(default_factory=list, metadata={**field.metadata, "imports": True})


def allowed(f: dataclasses.Field) -> list | None:
    """The allowed values of a field (a registry's names are read now), or None for any."""
    choices = f.metadata.get("choices")
    return list(choices()) if callable(choices) else (list(choices) if choices else None)


def _coerce(where: str, owner: type, f: dataclasses.Field, value: Any, *, registry: bool = True):
    """Check ``value`` against the field's type (ints are accepted for floats), check and
    choices; ``registry=False`` leaves out choices read from a registry (checked with the whole
    configuration, once the plugins it names are imported)."""
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
    elif tp is list:
        value = [value] if isinstance(value, str) else value  # one item, e.g. run.imports=my_pkg
        ok = isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value)
    if not ok:
        raise ConfigError(
            f"{where} must be {'an' if tp is int else 'a'} {tp.__name__}{' or null' if optional else ''}, "
            f"got {value!r} "
            f"({type(value).__name__})"
        )
    if tp is int and not -(2**63) <= value < 2**63:  # YAML reads any number of digits
        raise ConfigError(f"{where} = {value} is too large an integer")
    choices = allowed(f) if registry or not callable(f.metadata.get("choices")) else None
    if choices is not None and value not in choices:
        what = f.metadata.get("choices_help") or "allowed"
        listing = ", ".join(map(str, choices))
        raise ConfigError(f"{where} = {value!r} is not {what}; allowed values: {listing}")
    if f.metadata.get("check") is not None:
        f.metadata["check"](where, value)
    return value


def coerce_field(where: str, owner: type, f: dataclasses.Field, value: Any, *, registry: bool = True) -> Any:
    """``value`` checked against field ``f`` of the dataclass ``owner`` (type, choices, check);
    ``where`` names it in the error (a key, or the flag that set it).  ``registry=False`` skips
    choices read from a registry (a plugin imported later may add to them)."""
    return _coerce(where, owner, f, value, registry=registry)


def check_fields(cfg, prefix: str = "") -> None:
    """Check every key of ``cfg`` (a config of sections, or one section named ``prefix``)
    against its declaration -- for configs built in Python, which skip the checks that
    :func:`set_values` makes."""
    sections = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)]
    if prefix or not all(dataclasses.is_dataclass(sec) for _, sec in sections):
        sections = [(prefix, cfg)]
    for name, sec in sections:
        for f in dataclasses.fields(sec):
            where = f"{name}.{f.name}" if name else f.name
            setattr(sec, f.name, _coerce(where, type(sec), f, getattr(sec, f.name)))


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
    value = _coerce(f"{section}.{key}", type(sec), f, copy.deepcopy(value), registry=False)
    if f.metadata.get("imports"):  # user code: imported now, so that the keys after it may name it
        from .plugins import import_plugins

        value = import_plugins([*getattr(sec, key), *value], where=f"{section}.{key}:")
    setattr(sec, key, value)


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
    for key, value in _imports_first(items):
        _set(cfg, key, value)


def _imports_first(items) -> list[tuple[str, Any]]:
    """``run.imports`` (also inside a ``run:`` mapping) before every other key: a data set or
    model that a plugin registers is then known when its key is checked."""
    first, rest = [], []
    for key, value in items:
        if key.endswith(".imports"):
            first.append((key, value))
        elif "." not in key and isinstance(value, dict) and "imports" in value:
            first.append((f"{key}.imports", value["imports"]))
            rest.append((key, {k: v for k, v in value.items() if k != "imports"}))
        else:
            rest.append((key, value))
    return first + rest


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
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a text file (a YAML config is UTF-8 text)") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from e
        if not isinstance(data, dict):
            sections = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{path} must hold a mapping of sections ({sections})")
        data = _imports_beside(data, path.parent)
    set_values(cfg, {str(section): values for section, values in (data or {}).items()})
    return cfg


def _imports_beside(data: dict, folder: Path) -> dict:
    """A config file's relative ``.py`` imports are read from the file's folder (as a config's
    own paths are meant), not from wherever the command runs; module names stay as they are."""
    run = data.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("imports"), (list, str)):
        return data
    specs = [run["imports"]] if isinstance(run["imports"], str) else run["imports"]
    beside = [
        str(folder / s) if isinstance(s, str) and s.endswith(".py") and not Path(s).is_absolute() else s
        for s in specs
    ]
    return {**data, "run": {**run, "imports": beside}}
