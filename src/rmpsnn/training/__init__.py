"""Training: direct SNN training with RMP-Loss (:class:`Trainer`, :func:`train`, behind
``rmpsnn train``), ANN training for conversion (``train_ann``), configuration
(:func:`load_config`), and pickle-free checkpoints."""

from ..checkpoint import CheckpointError, load_model, resolve_checkpoint, save_model
from ..evaluation import evaluate_arrays, normalised
from .ann import ann_config, train_ann
from .config import ConfigError, TrainConfig, load_config
from .runs import LoadedRun, load_run
from .state import load_state, save_state
from .trainer import Trainer, evaluate_model, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "LoadedRun",
    "TrainConfig",
    "Trainer",
    "ann_config",
    "evaluate_arrays",
    "evaluate_model",
    "load_config",
    "load_model",
    "load_run",
    "load_state",
    "normalised",
    "resolve_checkpoint",
    "save_model",
    "save_state",
    "train",
    "train_ann",
]
