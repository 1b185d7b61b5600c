"""Training configuration: a YAML file (``configs/*.yaml``) plus ``section.key=value`` overrides,
checked against a typed schema so that a typo or a bad value fails before any work starts, with
a message naming the key and the allowed values.

Sections (every key has a default; see ``configs/cpu.yaml`` for a commented example)::

    model:  name, timesteps, readout (final|mean), neuron (a registered neuron kind: lif, plif, if,
            ...), kwargs {width, tau, v_th, surrogate, ...}
    data:   dataset, root, augment, cutout, train_limit, test_limit, num_workers, event_size,
            download
    optim:  name, epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_epochs,
            scale_wide_linear, grad_clip, amp
    rmp:    enabled, k, p, reduction
    loss:   kind (a registered loss term: ce | tet | ...), kwargs {the term's options}
    run:    out, seed, device, checkpoint_every, checkpoint_minutes, eval_every, tensorboard,
            progress, time_budget_min, overwrite
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import config_to_dict, parse_override, read_config, set_values
from ..data.registry import DataConfig
from ..errors import ConfigError
from ..models import list_models
from ..neurons import NEURONS

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "load_config",
    "parse_override",
]


def _choices(*values: str) -> dict:
    return {"choices": values}


@dataclass
class ModelSection:
    name: str = "cpu_net"
    timesteps: int = 4
    readout: str = field(default="final", metadata=_choices("final", "mean"))
    neuron: str = "lif"  # a name in rmpsnn.neurons.NEURONS; goes to the model as kwargs["neuron"]
    kwargs: dict = field(default_factory=dict)


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
class LossSection:
    """The main loss term (``rmpsnn.training.objective.LOSS_TERMS``; RMP-Loss is added by ``rmp``)."""

    kind: str = "ce"
    kwargs: dict = field(default_factory=dict)


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
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    rmp: RMPSection = field(default_factory=RMPSection)
    loss: LossSection = field(default_factory=LossSection)
    run: RunSection = field(default_factory=RunSection)

    def run_dir(self) -> Path:
        """``run.out`` with ``{section.key}`` and ``{rmp_tag}`` (``rmp`` or ``plain``) filled in."""
        values = {f"{s}.{k}": v for s, sec in config_to_dict(self).items() for k, v in sec.items()}
        values["rmp_tag"] = "rmp" if self.rmp.enabled else "plain"
        out = self.run.out
        for k, v in values.items():
            out = out.replace("{" + k + "}", str(v))
        return Path(out)


def _validate(cfg: TrainConfig) -> None:
    if cfg.model.name not in list_models():
        raise ConfigError(
            f"model.name = {cfg.model.name!r} is not a registered model; allowed values: "
            f"{', '.join(list_models())}"
        )
    if cfg.rmp.enabled and cfg.model.name not in list_models("snn"):
        raise ConfigError(
            f"rmp.enabled=true needs a spiking model, and {cfg.model.name} is an ANN; set rmp.enabled=false "
            f"(`rmpsnn train-ann` does)"
        )
    cfg.data.check()
    _apply_neuron(cfg)
    _validate_loss(cfg)
    for where, value, lo in (
        ("model.timesteps", cfg.model.timesteps, 1),
        ("optim.epochs", cfg.optim.epochs, 1),
        ("optim.batch_size", cfg.optim.batch_size, 1),
        ("run.checkpoint_every", cfg.run.checkpoint_every, 0),
        ("run.eval_every", cfg.run.eval_every, 1),
    ):
        if value < lo:
            raise ConfigError(f"{where} must be >= {lo}, got {value}")
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
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.rmp.p <= 0 or cfg.rmp.k < 0:
        raise ConfigError(f"rmp.p must be > 0 and rmp.k >= 0, got p={cfg.rmp.p}, k={cfg.rmp.k}")
    if cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0:
        raise ConfigError(f"optim.grad_clip must be > 0 or null, got {cfg.optim.grad_clip}")


def _apply_neuron(cfg: TrainConfig) -> None:
    """``model.neuron`` names a registered neuron kind; a spiking model gets it as
    ``model.kwargs.neuron`` (so the run's stored model arguments rebuild the same neurons)."""
    neuron = cfg.model.neuron
    if not isinstance(neuron, str) or neuron not in NEURONS:
        raise ConfigError(f"model.neuron: {NEURONS.unknown_message(neuron)}")
    given = cfg.model.kwargs.get("neuron")
    if given is not None and given != neuron and neuron != "lif":
        raise ConfigError(
            f"model.neuron={neuron!r} and model.kwargs.neuron={given!r} disagree; set only model.neuron"
        )
    if neuron != "lif" and given is None:
        if cfg.model.name not in list_models("snn"):
            raise ConfigError(f"model.neuron={neuron!r} needs a spiking model; {cfg.model.name} is an ANN")
        cfg.model.kwargs["neuron"] = neuron


def _validate_loss(cfg: TrainConfig) -> None:
    from . import loss_terms  # noqa: F401  (registers the built-in terms)
    from .objective import LOSS_TERMS

    main = [n for n in LOSS_TERMS.names() if LOSS_TERMS.entry(n).meta.get("role") != "regulariser"]
    if cfg.loss.kind not in LOSS_TERMS or LOSS_TERMS.entry(cfg.loss.kind).meta.get("role") == "regulariser":
        raise ConfigError(
            f"loss.kind = {cfg.loss.kind!r} is not a main loss term; allowed values: {', '.join(main)}"
        )


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict | None) -> TrainConfig:
    """Set ``section.key=value`` overrides (strings or a dict) on ``cfg`` and validate it."""
    set_values(cfg, overrides)
    _validate(cfg)
    return cfg


def load_config(
    source: str | os.PathLike | dict | None = None,
    overrides: list[str] | dict | None = None,
    *,
    defaults: dict | None = None,
) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (or a dict, or defaults when ``None``) and
    overrides, on top of ``defaults`` (sections as in a file; e.g. ``train-ann``'s recipe);
    raises :class:`ConfigError` naming the offending key."""
    cfg = read_config(TrainConfig, source, defaults=defaults)
    return apply_overrides(cfg, overrides)
