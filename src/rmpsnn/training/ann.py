"""Supervised training of the ANNs that are converted to SNNs (``rmpsnn train-ann``).

There is one training engine (:class:`~rmpsnn.training.trainer.Trainer`); an ANN run is a
:class:`TrainConfig` whose model is an ANN and whose RMP-Loss is off. :data:`ANN_DEFAULTS` (declared
beside the configuration, :mod:`.config`) is the recipe: SGD with Nesterov momentum 0.9, linear
warm-up over the first epoch (at most 10 % of the run) then cosine decay to 0, weight decay (not on
biases and BN), random crop and horizontal flip, cross-entropy; inputs normalised with the training
set's per-channel statistics (stored in the checkpoint, because the SNN must see the same input).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..checkpoint import save_model
from ..config import config_to_dict
from ..data.config import DataConfig
from ..errors import ConfigError, InputError
from .config import ANN_DEFAULTS, TrainConfig, load_config
from .trainer import Trainer

__all__ = [
    "ann_config",
    "fit_ann",
    "save_ann",
    "train_ann",
]


def ann_config(source=None, overrides=None) -> TrainConfig:
    """The :class:`TrainConfig` of an ANN run: :data:`ANN_DEFAULTS`, then ``source`` (a YAML
    file or a dict), then ``overrides``.  The warm-up never exceeds 10 % of the run."""
    cfg = load_config(source, overrides, defaults=ANN_DEFAULTS)
    cfg.optim.warmup_epochs = min(cfg.optim.warmup_epochs, cfg.optim.epochs / 10)
    return cfg


# the config keys train_ann's keywords set: the config validates them, its errors name the keyword
_KEYWORD_OF = {
    "optim.epochs": "epochs",
    "optim.batch_size": "batch_size",
    "optim.lr": "lr",
    "optim.weight_decay": "weight_decay",
    "data.train_limit": "train_limit",
    "data.test_limit": "test_limit",
    "run.seed": "seed",
}


def train_ann(
    model_name: str | None = None,
    *,
    data: str | None = "shared",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    activation: str | None = None,
    qcfs_levels: int | None = None,
    model_kwargs: dict | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    out: str | None = None,
    time_budget_s: float | None = None,
    run_dir: str | None = None,
    log: Callable[[str], None] = print,
):
    """Train a registered ANN on a static image data set; returns ``(model, info)``.

    A keyword front end to the one trainer: it builds the :func:`ann_config` of these arguments
    (``data`` is a spec as :meth:`DataConfig.from_spec` reads it) and runs it in ``run_dir``
    (default: a temporary directory).  A keyword left at ``None`` keeps the recipe's value
    (:data:`ANN_DEFAULTS`, then the configuration's defaults; ``activation``/``qcfs_levels``:
    the builder's), so no default is restated here.  ``time_budget_s`` stops after the epoch
    during which the budget ran out (the cosine schedule still spans ``epochs``).  ``out`` saves
    the final model as a safetensors checkpoint with the model name, its arguments, the input
    statistics and the accuracies.
    """
    budget_ok = isinstance(time_budget_s, (int, float)) and not isinstance(time_budget_s, bool)
    if time_budget_s is not None and not (budget_ok and 0 < time_budget_s < math.inf):
        # the config holds minutes; checked here so that the error speaks of seconds
        raise InputError(f"time_budget_s must be a positive number of seconds or None, got {time_budget_s!r}")
    data_cfg = DataConfig.from_spec(data, train_limit=train_limit, test_limit=test_limit)
    builder_args = {"activation": activation, "qcfs_levels": qcfs_levels}
    kwargs = {**{k: v for k, v in builder_args.items() if v is not None}, **(model_kwargs or {})}
    given = {
        "model.name": model_name,
        "optim.epochs": epochs,
        "optim.batch_size": batch_size,
        "optim.lr": lr,
        "optim.weight_decay": weight_decay,
        "run.seed": seed,
    }
    overrides = {
        **{k: v for k, v in given.items() if v is not None},
        "model.kwargs": kwargs,
        "data": vars(data_cfg),
        "run.device": str(device),
        "run.time_budget_min": time_budget_s / 60 if time_budget_s is not None else None,
        "run.overwrite": True,
    }
    try:
        cfg = ann_config(None, overrides)
    except ConfigError as e:
        msg = str(e)
        for key, keyword in _KEYWORD_OF.items():
            msg = msg.replace(key, keyword)
        raise ConfigError(msg) from None
    if run_dir is not None:
        model, info = fit_ann(cfg, Path(run_dir), log=log)
    else:
        with tempfile.TemporaryDirectory(prefix="rmpsnn-ann-") as tmp:
            model, info = fit_ann(cfg, Path(tmp), log=log, temporary=True)
    if out:
        save_ann(out, model, cfg, info)
        log(f"saved {out}")
    return model, info


def fit_ann(
    cfg: TrainConfig, run_dir: Path, *, resume: bool = False, log: Callable = print, temporary: bool = False
):
    """Run the trainer on an ANN config; ``(final model in eval mode, info)`` where ``info``
    holds the input statistics, the per-epoch history and the final test accuracy."""
    trainer = Trainer(cfg, run_dir=run_dir, log=log, temporary=temporary)
    if trainer.data.norm is None:
        trainer.dist.close()
        raise ConfigError(
            f"data.dataset={cfg.data.dataset} is not a set of static images; an ANN for conversion needs one"
        )
    summary = trainer.run(resume=resume)
    history = [
        {
            "epoch": r["epoch"],
            "loss": r["ce"],
            "train_accuracy": r["train_accuracy"],
            "test_accuracy": r.get("test_accuracy"),
            "seconds": r["epoch_seconds"],
        }
        for r in trainer.history
    ]
    mean, std = trainer.data.norm
    info = {
        "mean": mean,
        "std": std,
        "test_accuracy": summary["final"].get("test_accuracy"),
        "history": history,
        "data": trainer.data.info,  # image counts and the input shape (for export)
        "train_images": trainer.data.info["train_images"],
        "seconds": summary["seconds"],
        "run_dir": str(run_dir),
    }
    return trainer.model.eval(), {**info, "model_kwargs": trainer.model_kwargs}


def save_ann(out, model, cfg: TrainConfig, info: dict) -> None:
    """The final model as ``convert`` reads it: name, arguments, input statistics, accuracies."""
    meta = {k: v for k, v in info.items() if k not in ("model_kwargs", "run_dir")}
    save_model(
        out,
        model,
        model_name=cfg.model.name,
        model_kwargs=info["model_kwargs"],
        config=config_to_dict(cfg),
        **meta,
    )
