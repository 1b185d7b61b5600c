"""Training: ANN training for conversion (``train_ann``) and safetensors checkpoints."""

from .ann import evaluate_arrays, normalised, train_ann
from .checkpoint import CheckpointError, load_model, save_model

__all__ = ["CheckpointError", "evaluate_arrays", "load_model", "normalised", "save_model", "train_ann"]
