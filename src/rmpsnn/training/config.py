"""Training configuration: a YAML file (``configs/*.yaml``) plus ``section.key=value`` overrides,
checked against a typed schema so that a typo or a bad value fails before any work starts, with
a message naming the key and the allowed values.

Every key is declared once below (:func:`rmpsnn.config.option`: type, default, help, check,
choices, shorthand flags); ``rmpsnn train --help`` lists them.  Sections::

    model:  name, timesteps, readout (final|mean), neuron (a registered neuron
            kind: lif, plif, if, ...), kwargs {width, tau, v_th, surrogate, ...}
    data:   dataset, root, augment, cutout, train_limit, test_limit, num_workers, download,
            options {the data set's own keys, e.g. size of the event sets}
    optim:  name, epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_epochs,
            scale_wide_linear, grad_clip, amp
    rmp:    enabled, k, p, reduction
    loss:   kind (a registered loss term: ce | tet | ...), kwargs {the term's options}
    run:    out, seed, device, checkpoint_every, checkpoint_minutes, eval_every, tensorboard,
            progress, time_budget_min, overwrite, imports

This module imports neither torch nor the model zoo (the command line builds its options from it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import (
    above,
    at_least,
    check_fields,
    config_to_dict,
    imports_option,
    in_range,
    option,
    read_config,
    set_values,
)
from ..data.config import DataConfig
from ..errors import ConfigError

__all__ = [
    "ANN_DEFAULTS",
    "TrainConfig",
    "apply_overrides",
    "load_config",
]

SEED_RANGE = in_range(0, 2**32 - 1)  # numpy's and torch's seeds both take it


def _neuron_names() -> list[str]:
    from ..neurons import NEURONS

    return NEURONS.names()


def _model_names() -> list[str]:
    from ..models import list_models

    return list_models()


@dataclass
class ModelSection:
    name: str = option(
        "cpu_net",
        help="a registered model (rmpsnn list models)",
        choices=_model_names,
        choices_help="a registered model",
        flags=("--model",),
    )
    timesteps: int = option(
        4, help="time steps T of a spiking model", check=at_least(1), flags=("--timesteps",)
    )
    readout: str = option(
        "final", help="output of the last step, or the mean over T", choices=("final", "mean")
    )
    neuron: str = option(
        "lif",
        help="the spiking neurons: a registered neuron kind (rmpsnn list neurons)",
        choices=_neuron_names,
        choices_help="a registered neuron",
    )
    kwargs: dict = option(default_factory=dict, help="the model builder's own arguments (width, v_th, ...)")


@dataclass
class OptimSection:
    name: str = option("sgd", help="optimizer", choices=("sgd", "adamw"))
    epochs: int = option(10, help="training epochs", check=at_least(1), flags=("--epochs",))
    batch_size: int = option(
        64, help="images per step (all processes together)", check=at_least(1), flags=("--batch-size",)
    )
    lr: float = option(
        0.01, help="peak learning rate (warm-up, then cosine)", check=above(0), flags=("--lr",)
    )
    momentum: float = option(0.9, help="SGD momentum", check=in_range(0, 1, high_open=True))
    nesterov: bool = option(False, help="Nesterov momentum")
    weight_decay: float = option(
        5e-4, help="weight decay (not on biases and BN)", check=at_least(0), flags=("--weight-decay",)
    )
    warmup_epochs: float = option(0.0, help="linear warm-up epochs", check=at_least(0))
    scale_wide_linear: bool = option(False, help="scale the learning rate of wide linear layers")
    grad_clip: float | None = option(None, help="clip the gradient norm (null: off)", check=above(0))
    amp: str = option("auto", help="mixed precision (auto: on CUDA)", choices=("auto", "on", "off"))


@dataclass
class RMPSection:
    enabled: bool = option(True, help="add RMP-Loss to the cross-entropy")
    k: float = option(0.1, help="RMP-Loss weight lambda", check=at_least(0))
    p: float = option(2.0, help="RMP-Loss exponent", check=above(0))
    reduction: str = option("element", help="mean over elements, or per layer", choices=("element", "layer"))


@dataclass
class LossSection:
    """The main loss term (``rmpsnn.training.objective.LOSS_TERMS``; RMP-Loss is added by ``rmp``)."""

    kind: str = option("ce", help="the main loss term: ce, tet, or a registered one (checked on use)")
    kwargs: dict = option(default_factory=dict, help="the loss term's own options (e.g. lam, phi for tet)")


@dataclass
class RunSection:
    out: str = option(
        "runs/{data.dataset}-{model.name}-T{model.timesteps}-{rmp_tag}-seed{run.seed}",
        help="run directory ({section.key} and {rmp_tag} are filled in)",
    )
    seed: int = option(0, help="random seed", check=SEED_RANGE, flags=("--seed",))
    device: str = option(
        "auto", help="cpu, cuda, cuda:N, mps, or auto (a GPU if there is one)", flags=("--device",)
    )
    checkpoint_every: int = option(0, help="also checkpoint every N steps (0: each epoch)", check=at_least(0))
    checkpoint_minutes: float = option(10.0, help="checkpoint at least this often", check=above(0))
    eval_every: int = option(1, help="evaluate every N epochs", check=at_least(1))
    tensorboard: bool = option(False, help="write TensorBoard logs")
    progress: str = option("auto", help="progress bar", choices=("auto", "on", "off"))
    time_budget_min: float | None = option(
        None,
        help="stop after the epoch in which this many minutes passed",
        check=above(0),
        flags=("--time-budget",),
    )
    overwrite: bool = option(False, help="replace a finished run in run.out")
    imports: list = imports_option(
        "modules or .py files imported first (user data sets, models, balancers); stored with the run"
    )


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


# what `rmpsnn train-ann` starts from before its config file and overrides: SGD with Nesterov
# momentum, a warm-up of one epoch (at most 10 % of the run) then cosine decay, no RMP-Loss
ANN_DEFAULTS = {
    "model": {"name": "ann_cpu_net"},
    "optim": {
        "epochs": 10,
        "batch_size": 128,
        "lr": 0.05,
        "nesterov": True,
        "weight_decay": 5e-4,
        "warmup_epochs": 1.0,
        "scale_wide_linear": True,
    },
    "rmp": {"enabled": False},
    "run": {"out": "runs/ann-{data.dataset}-{model.name}-seed{run.seed}"},
}


def _validate(cfg: TrainConfig) -> None:
    from ..models import list_models
    from ..models.registry import check_kwargs

    check_fields(cfg)
    cfg.data.check()
    if cfg.rmp.enabled and cfg.model.name not in list_models("snn"):
        raise ConfigError(
            f"rmp.enabled=true needs a spiking model, and {cfg.model.name} is an ANN; set rmp.enabled=false "
            f"(`rmpsnn train-ann` does)"
        )
    _apply_neuron(cfg)
    _validate_loss(cfg)
    check_kwargs(cfg.model.name, cfg.model.kwargs, where="model.kwargs")


def _apply_neuron(cfg: TrainConfig) -> None:
    """``model.neuron`` names a registered neuron kind; a spiking model gets it as
    ``model.kwargs.neuron`` (so the run's stored model arguments rebuild the same neurons)."""
    from ..models import list_models
    from ..neurons import NEURONS

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
