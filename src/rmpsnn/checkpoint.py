"""Files that must not be lost: the atomic write every saved file goes through, and model
checkpoints as safetensors (no pickle) with a JSON description.  A library service: training,
export, the app layer and the data caches all write through here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from .errors import CheckpointError, InputError, NonFiniteError, one_line
from .io import atomic_write
from .limits import check_memory
from .models import create

__all__ = [
    "describe_nonfinite",
    "load_model",
    "nonfinite_tensors",
    "read_safetensors",
    "resolve_checkpoint",
    "save_model",
]


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers of ``model`` holding NaN or inf."""
    return [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def describe_nonfinite(names: list[str]) -> str:
    """``"2 weight tensor(s) became NaN or infinite (a, b)"`` (at most three names)."""
    more = ", ..." if len(names) > 3 else ""
    return f"{len(names)} weight tensor(s) became NaN or infinite ({', '.join(names[:3])}{more})"


def save_model(
    path: str | os.PathLike, model: nn.Module, *, model_name: str, model_kwargs: dict, **info
) -> Path:
    """Write ``model``'s weights and buffers to ``path`` (``.safetensors``) with metadata that
    rebuilds it (``model_name``, ``model_kwargs``) and any JSON-serialisable ``info``.  The file
    is written to a temporary name and renamed, so a crash never leaves half a checkpoint."""
    bad = nonfinite_tensors(model)
    if bad:
        raise NonFiniteError(
            f"not saving {path}: {describe_nonfinite(bad)}; training diverged -- lower the learning rate"
        )
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
    path: str | os.PathLike, *, model_name: str | None = None, device="cpu", kwargs: dict | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved by :func:`save_model` (or the model inside a training checkpoint
    of :class:`rmpsnn.training.Trainer`); returns ``(model, info)`` (info includes ``model`` and
    ``kwargs``).  ``model_name`` overrides the stored name; ``kwargs`` overrides stored builder
    arguments that do not size a tensor (e.g. ``{"timesteps": 8}``: the model is built with
    them, not changed afterwards)."""
    path = Path(path)
    state, meta = read_safetensors(path, device, what="safetensors checkpoint")
    if "tree" in meta:  # a training checkpoint (rmpsnn.training.state): the model's tensors
        state = {k.removeprefix("model/"): v for k, v in state.items() if k.startswith("model/")}
    name = model_name or meta.get("model")
    if not name:
        raise CheckpointError(f"{path} does not say which model it holds; pass the model name")
    stored, info = (_metadata_json(path, meta, key) for key in ("kwargs", "info"))
    foreign = sorted(set(kwargs or {}) - set(stored))
    if foreign:
        raise InputError(
            f"{path}: model {name!r} was not built with {', '.join(foreign)} (its arguments: "
            f"{', '.join(stored) or 'none'}), so {'it' if len(foreign) == 1 else 'they'} cannot be changed"
        )
    kwargs = {**stored, **(kwargs or {})}
    model = _build(path, name, kwargs)
    _check_stored_types(path, state, model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensors of the wrong shape
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"{path} does not match model {name!r} {kwargs}: {first} (was it saved with other arguments?)"
        ) from e
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match model {name!r} {kwargs}: missing {list(missing)[:5]}, unexpected "
            f"{list(unexpected)[:5]}"
        )
    bad = nonfinite_tensors(model)
    if bad:
        more = ", ..." if len(bad) > 3 else ""
        raise CheckpointError(
            f"{path} holds NaN or infinite values in {len(bad)} tensor(s) ({', '.join(bad[:3])}{more}); "
            f"the file is damaged or was not saved by rmpsnn -- use another checkpoint"
        )
    info.update(model=name, kwargs=kwargs)
    return model.to(device), info


def _build(path: Path, name: str, kwargs: dict) -> nn.Module:
    """``create(name, **kwargs)`` for the arguments a checkpoint's metadata records, sized first on
    the meta device (no memory) so that crafted sizes are refused instead of allocated."""
    try:
        with torch.device("meta"):
            probe = create(name, **kwargs)
        n = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
        check_memory(
            n * 4.0,
            what=f"{path}: model {name!r} {kwargs}",
            lower="the checkpoint's metadata is damaged or the model is too large for this machine",
            error=CheckpointError,
        )
        return create(name, **kwargs)
    except CheckpointError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError, NotImplementedError) as e:
        detail = one_line(e)
        raise CheckpointError(
            f"{path} does not match model {name!r}: its metadata does not build it ({detail}); the file "
            f"was edited or written for another version"
        ) from e


def _check_stored_types(path: Path, state: dict, model: nn.Module) -> None:
    """Weights stored as bool or integers load into float tensors without complaint (and then make
    nonsense, e.g. a threshold of 0): refuse them, naming the tensor."""
    expected = model.state_dict()
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and want.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {key!r} is stored as {value.dtype}, but the model's is floating point; "
                f"the file was not written by rmpsnn or was altered"
            )


def read_safetensors(
    path: str | os.PathLike, device="cpu", *, what: str = "safetensors file"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, read in one go: a checkpoint that a running
    training replaces meanwhile (atomically) is read whole, old or new, never half of each."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        meta = dict(json.loads(data[8 : 8 + n]).get("__metadata__") or {})
        tensors = safetensors.torch.load(data)
    except (SafetensorError, OSError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"{path}: not a readable {what} ({type(e).__name__}: {e}); it may be truncated"
        ) from e
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta


def _metadata_json(path: Path, meta: dict, key: str) -> dict:
    try:
        value = json.loads(meta.get(key, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the checkpoint's metadata {key!r} is not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the checkpoint's metadata {key!r} is not a JSON object")
    return value
