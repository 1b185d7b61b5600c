"""Model checkpoints: they live in :mod:`rmpsnn.checkpoint` (a service of the whole library);
these names stay importable from here."""

from ..checkpoint import (
    CheckpointError,
    describe_nonfinite,
    load_model,
    nonfinite_tensors,
    resolve_checkpoint,
    save_model,
)

__all__ = [
    "CheckpointError",
    "describe_nonfinite",
    "load_model",
    "nonfinite_tensors",
    "resolve_checkpoint",
    "save_model",
]
