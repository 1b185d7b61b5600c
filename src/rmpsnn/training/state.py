"""Training state (model, optimizer, scheduler, RNG, progress) in one safetensors file, no pickle.

A nested structure of dicts, lists, tuples, numbers, strings and tensors is split into its
tensors (stored by safetensors under their path, e.g. ``optimizer/state/0/momentum_buffer``)
and a JSON skeleton (stored in the file's metadata) in which each tensor is a placeholder.
Loading reads tensors with safetensors and the skeleton with ``json``: nothing in the file can
run code, unlike ``torch.load`` of a pickle.  Writes go to a temporary file that is renamed, so
a run killed while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..checkpoint import read_safetensors
from ..errors import CheckpointError
from ..io import atomic_write

__all__ = ["check_resume_state", "load_state", "save_state"]

_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


def _child(path: str, key) -> str:
    return f"{path}/{key}" if path else str(key)


def _split(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not ({_TENSOR, _TUPLE, _DICT} & obj.keys()):
            return {k: _split(v, _child(path, k), tensors) for k, v in obj.items()}
        # non-string keys (the optimizer's parameter indices) keep their type as [key, value] pairs
        return {_DICT: [[k, _split(v, _child(path, k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_split(v, _child(path, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_split(v, _child(path, i), tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path or '/'} in a training checkpoint")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_join(v, tensors) for v in obj[_TUPLE])
        if _DICT in obj:
            return {k: _join(v, tensors) for k, v in obj[_DICT]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike, state: dict, metadata: dict[str, str] | None = None) -> Path:
    """Write ``state`` (nested dicts/lists/tuples of tensors and JSON values) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    meta = {**(metadata or {}), "tree": json.dumps(skeleton)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), durable=True)


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict, dict[str, str]]:
    """Read a file written by :func:`save_state`; returns ``(state, metadata)``."""
    path = Path(path)
    what = "rmpsnn training checkpoint"
    tensors, meta = read_safetensors(path, device, what=what)
    try:
        skeleton = json.loads(meta.pop("tree"))
    except (ValueError, KeyError, RecursionError) as e:
        raise CheckpointError(
            f"{path}: not a readable {what} ({type(e).__name__}: {e}); resume from an earlier copy or "
            f"start the run again"
        ) from e
    try:
        return _join(skeleton, tensors), meta
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise CheckpointError(
            f"{path}: the {what}'s structure is damaged ({type(e).__name__}: {str(e)[:120]}); resume from "
            f"an earlier copy or start the run again"
        ) from e


def _whole(progress: dict, key: str, low: int, high: float | None, path) -> int:
    value = progress.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise CheckpointError(
            f"{path}: progress {key}={value!r} is not a whole number in {bound}; the checkpoint was edited "
            f"or damaged -- resume from an earlier copy or start the run again"
        )
    return value


def check_resume_state(state, path, *, epochs: int, steps_per_epoch: int, partial_size: int = 5) -> None:
    """Refuse a training checkpoint whose parts cannot be resumed as they are: missing parts,
    progress outside the run (``epoch`` in 0..epochs, ``step`` within an epoch), non-finite
    sums, random-number states the generators do not take.  One :class:`CheckpointError` line."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (its state is a {type(state).__name__})")
    missing = [k for k in ("model", "optimizer", "scheduler", "progress", "partial", "rng") if k not in state]
    if missing or not isinstance(state["progress"], dict) or not isinstance(state["rng"], dict):
        raise CheckpointError(f"{path}: the training checkpoint lacks {missing or 'its progress or rng'}")
    p = state["progress"]
    _whole(p, "epoch", 0, epochs, path)
    _whole(p, "step", 0, max(steps_per_epoch - 1, 0), path)
    _whole(p, "global_step", 0, None, path)
    for key, ok in (("best_accuracy", lambda v: v == -1.0 or 0.0 <= v <= 1.0), ("elapsed", lambda v: v >= 0)):
        v = p.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            raise CheckpointError(f"{path}: progress {key}={v!r} is out of range; the checkpoint was edited")
    partial = state["partial"]
    if (
        not torch.is_tensor(partial)
        or partial.shape != (partial_size,)
        or not bool(torch.isfinite(partial.double()).all())
    ):
        raise CheckpointError(f"{path}: the epoch's partial sums are damaged; resume from an earlier copy")
    _check_rng(state["rng"], path)


def _check_rng(rng: dict, path) -> None:
    torch_state = rng.get("torch")
    try:
        if not torch.is_tensor(torch_state) or torch_state.dtype != torch.uint8:
            raise TypeError(f"the torch state is {type(torch_state).__name__}, not a uint8 tensor")
        torch.Generator().set_state(torch_state)
        random.Random().setstate(rng.get("python"))
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise CheckpointError(
            f"{path}: the random-number state is damaged ({str(e)[:120]}); resume from an earlier copy"
        ) from e
