"""Training configuration: a YAML file (``configs/*.yaml``) plus ``section.key=value`` overrides,
checked against a typed schema so that a typo or a bad value fails before any work starts, with
a message naming the key and the allowed values.

Sections (every key has a default; see ``configs/cpu.yaml`` for a commented example)::

    model:  name, timesteps, readout (final|mean), kwargs {width, tau, v_th, surrogate, ...}
    data:   dataset, root, augment, cutout, train_limit, test_limit, num_workers, event_size,
            download
    optim:  name, epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_epochs,
            scale_wide_linear, grad_clip, amp
    rmp:    enabled, k, p, reduction
    run:    out, seed, device, checkpoint_every, checkpoint_minutes, eval_every, tensorboard,
            progress, time_budget_min, overwrite
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "config_to_dict", "load_config"]


_FLOAT32_MAX = 3.4028234663852886e38


def _choices(*values: str) -> dict:
    return {"choices": values}


@dataclass
class ModelSection:
    name: str = "cpu_net"
    timesteps: int = 4
    readout: str = field(default="final", metadata=_choices("final", "mean"))
    kwargs: dict = field(default_factory=dict)


DATASETS = ("cifar10", "cifar100", "images", "digits", "cifar10-dvs", "emulated-dvs", "imagenet", "synthetic")


@dataclass
class DataSection:
    dataset: str = field(default="cifar10", metadata=_choices(*DATASETS))
    root: str = "shared"
    augment: str = field(default="crop_flip", metadata=_choices("crop_flip", "autoaugment", "none"))
    cutout: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    num_workers: int = 0
    event_size: int = 48
    download: bool = False


@dataclass
class OptimSection:
    name: str = field(default="sgd", metadata=_choices("sgd", "adamw"))
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    scale_wide_linear: bool = False
    grad_clip: float | None = None
    amp: str = field(default="auto", metadata=_choices("auto", "on", "off"))


@dataclass
class RMPSection:
    enabled: bool = True
    k: float = 0.1
    p: float = 2.0
    reduction: str = field(default="element", metadata=_choices("element", "layer"))


@dataclass
class RunSection:
    out: str = "runs/{data.dataset}-{model.name}-T{model.timesteps}-{rmp_tag}-seed{run.seed}"
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    eval_every: int = 1
    tensorboard: bool = False
    progress: str = field(default="auto", metadata=_choices("auto", "on", "off"))
    time_budget_min: float | None = None
    overwrite: bool = False


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    rmp: RMPSection = field(default_factory=RMPSection)
    run: RunSection = field(default_factory=RunSection)

    def run_dir(self) -> Path:
        """``run.out`` with ``{section.key}`` and ``{rmp_tag}`` (``rmp`` or ``plain``) filled in."""
        values = {f"{s}.{k}": v for s, sec in config_to_dict(self).items() for k, v in sec.items()}
        values["rmp_tag"] = "rmp" if self.rmp.enabled else "plain"
        out = self.run.out
        for k, v in values.items():
            out = out.replace("{" + k + "}", str(v))
        return Path(out)


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


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


def _set(cfg: TrainConfig, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    section = parts[0]
    if section not in _SECTIONS:
        raise ConfigError(
            f"unknown config section {section!r} in {dotted!r}; sections: {', '.join(_SECTIONS)}"
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
        getattr(sec, key)[".".join(parts[2:])] = value
        return
    setattr(sec, key, _coerce(f"{section}.{key}", type(sec), f, value))


def _validate(cfg: TrainConfig) -> None:
    from ..models import list_models

    snn = list_models("snn")
    if cfg.model.name not in snn:
        raise ConfigError(
            f"model.name = {cfg.model.name!r} is not a spiking model; allowed values: {', '.join(snn)}"
        )
    for where, value, lo in (
        ("model.timesteps", cfg.model.timesteps, 1),
        ("optim.epochs", cfg.optim.epochs, 1),
        ("optim.batch_size", cfg.optim.batch_size, 1),
        ("data.num_workers", cfg.data.num_workers, 0),
        ("data.cutout", cfg.data.cutout, 0),
        ("run.checkpoint_every", cfg.run.checkpoint_every, 0),
        ("run.eval_every", cfg.run.eval_every, 1),
    ):
        if value < lo:
            raise ConfigError(f"{where} must be >= {lo}, got {value}")
    for where, value in (
        ("data.train_limit", cfg.data.train_limit),
        ("data.test_limit", cfg.data.test_limit),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{where} must be >= 1, or null for the whole split; got {value}")
    for where, value in (
        ("run.checkpoint_minutes", cfg.run.checkpoint_minutes),
        ("run.time_budget_min", cfg.run.time_budget_min),
    ):
        if value is not None and value <= 0:
            raise ConfigError(f"{where} must be > 0, got {value}")
    if cfg.optim.weight_decay < 0 or cfg.optim.warmup_epochs < 0 or not 0 <= cfg.optim.momentum < 1:
        raise ConfigError(
            f"optim.weight_decay and optim.warmup_epochs must be >= 0 and optim.momentum in [0, 1); got "
            f"{cfg.optim.weight_decay}, {cfg.optim.warmup_epochs}, {cfg.optim.momentum}"
        )
    if cfg.data.event_size < 8:
        raise ConfigError(f"data.event_size must be >= 8 pixels, got {cfg.data.event_size}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.rmp.p <= 0 or cfg.rmp.k < 0:
        raise ConfigError(f"rmp.p must be > 0 and rmp.k >= 0, got p={cfg.rmp.p}, k={cfg.rmp.k}")
    if cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0:
        raise ConfigError(f"optim.grad_clip must be > 0 or null, got {cfg.optim.grad_clip}")


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)``; the value is read as YAML (numbers, true/false,
    null, lists ``[32,64,128]``)."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value (e.g. optim.lr=0.05)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: cannot read the value {raw!r} ({e})") from e
    return key.strip(), value


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict | None) -> TrainConfig:
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in items:
        _set(cfg, key, value)
    _validate(cfg)
    return cfg


def load_config(
    source: str | os.PathLike | dict | None = None, overrides: list[str] | dict | None = None
) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (or a dict, or defaults when ``None``) and
    overrides; raises :class:`ConfigError` naming the offending key."""
    import yaml

    cfg = TrainConfig()
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
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections ({', '.join(_SECTIONS)})")
    for section, values in (data or {}).items():
        _set(cfg, str(section), values)
    return apply_overrides(cfg, overrides)
