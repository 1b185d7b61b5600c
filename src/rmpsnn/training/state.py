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
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..checkpoint import CheckpointError, atomic_write, read_safetensors

__all__ = ["load_state", "save_state"]

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
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"{path}: not a readable {what} ({type(e).__name__}: {e}); resume from an earlier copy or "
            f"start the run again"
        ) from e
    return _join(skeleton, tensors), meta
