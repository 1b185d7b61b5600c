"""Model checkpoints as safetensors (no pickle) with a JSON description, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

__all__ = ["CheckpointError", "load_model", "resolve_checkpoint", "save_model"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model."""


def save_model(
    path: str | os.PathLike, model: nn.Module, *, model_name: str, model_kwargs: dict, **info
) -> Path:
    """Write ``model``'s weights and buffers to ``path`` (``.safetensors``) with metadata that
    rebuilds it (``model_name``, ``model_kwargs``) and any JSON-serialisable ``info``.  The file
    is written to a temporary name and renamed, so a crash never leaves half a checkpoint."""
    from safetensors.torch import save_file

    from ..data._io import atomic_write

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"model": model_name, "kwargs": json.dumps(model_kwargs), "info": json.dumps(info)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), durable=True)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself, or for a run directory of ``rmpsnn train`` its ``best.safetensors``
    (``last.safetensors`` when no evaluation has finished yet)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("best.safetensors", "last.safetensors"):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path} holds no best.safetensors or last.safetensors")


def load_model(
    path: str | os.PathLike, *, model_name: str | None = None, device="cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved by :func:`save_model` (or the model inside a training checkpoint
    of :class:`rmpsnn.training.Trainer`); returns ``(model, info)`` (info includes ``model`` and
    ``kwargs``).  ``model_name`` overrides the stored name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from ..models import create

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({e}); it may be truncated"
        ) from e
    if "tree" in meta:  # a training checkpoint (rmpsnn.training.state): the model's tensors
        state = {k.removeprefix("model/"): v for k, v in state.items() if k.startswith("model/")}
    name = model_name or meta.get("model")
    if not name:
        raise CheckpointError(f"{path} does not say which model it holds; pass the model name")
    kwargs = json.loads(meta.get("kwargs", "{}"))
    try:
        model = create(name, **kwargs)
    except ValueError as e:
        raise CheckpointError(f"{path} does not match model {name!r}: {e}") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match model {name!r} {kwargs}: missing {list(missing)[:5]}, unexpected "
            f"{list(unexpected)[:5]}"
        )
    info = json.loads(meta.get("info", "{}"))
    info.update(model=name, kwargs=kwargs)
    return model.to(device), info
