"""Training: ANN training for conversion (``train_ann``), direct SNN training with RMP-Loss
(``train_snn``), and safetensors checkpoints."""

from .ann import evaluate_arrays, normalised, train_ann
from .checkpoint import CheckpointError, load_model, save_model
from .snn import evaluate_snn, train_snn

__all__ = [
    "CheckpointError",
    "evaluate_arrays",
    "evaluate_snn",
    "load_model",
    "normalised",
    "save_model",
    "train_ann",
    "train_snn",
]
