"""A user's own model for ``rmpsnn convert``: ``--model path/to/file.py:ClassOrFactory`` (or
``package.module:Name``) and ``--ann weights.safetensors`` (or a ``.pt``/``.pth`` state dict).

The class is instantiated (or the factory called) with ``ann.kwargs``; the weights are read without
executing code: safetensors, or ``torch.load(..., weights_only=True)``, which refuses pickled
objects.  The state dict must match the model exactly (missing, unexpected and mis-shaped keys are
named).
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..plugins import import_file

__all__ = ["is_user_model_spec", "load_state_dict_file", "load_user_model", "resolve_model_factory"]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def is_user_model_spec(spec: str | None) -> bool:
    """``file.py:Name`` or ``package.module:Name`` (a zoo model name has no colon)."""
    return isinstance(spec, str) and ":" in spec


def _import_file(path: Path):
    try:
        return import_file(path)
    except Exception as e:
        raise ConfigError(f"importing {path} failed: {type(e).__name__}: {e}") from e


def resolve_model_factory(spec: str):
    """The class or factory named by ``file.py:Name`` or ``package.module:Name``."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ConfigError(f"ann.model = {spec!r}: give path/to/file.py:ClassOrFactory or package.module:Name")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"ann.model = {spec!r}: the file {path} does not exist")
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ConfigError(f"ann.model = {spec!r}: cannot import {where!r} ({e})") from e
    obj = getattr(module, attr, None)
    if obj is None:
        names = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
        )
        defined = ", ".join(names) or "nothing callable"
        raise ConfigError(f"ann.model = {spec!r}: {where} defines no {attr!r}; it defines {defined}")
    if not callable(obj):
        raise ConfigError(f"ann.model = {spec!r}: {attr} is a {type(obj).__name__}, not a class or factory")
    return obj


def load_state_dict_file(path: str | Path, device="cpu") -> dict[str, torch.Tensor]:
    """A plain state dict (names -> tensors) from safetensors or a ``.pt``/``.pth`` file, read
    without running code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path}: give weights as {', '.join(WEIGHT_SUFFIXES)} (a state dict)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch colours its message
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointError(
            f"{path} is not a plain state dict that loads with weights_only=True ({first[:200]}); save "
            f"torch.save(model.state_dict(), path) rather than the pickled model"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} layout
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a plain state dict (parameter names -> tensors); "
            f"save torch.save(model.state_dict(), path)"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP/DataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_user_model(spec: str, weights: str | Path, *, kwargs: dict | None = None, device="cpu") -> nn.Module:
    """Build the model named by ``spec`` with ``kwargs`` and load ``weights`` into it (strict)."""
    factory = resolve_model_factory(spec)
    try:
        model = factory(**(kwargs or {}))
    except TypeError as e:
        call = ", ".join(f"{k}={v!r}" for k, v in (kwargs or {}).items())
        try:
            takes = f"; it takes {factory.__name__}{inspect.signature(factory)}"
        except (TypeError, ValueError):
            takes = ""
        raise ConfigError(
            f"ann.model = {spec!r}: calling {factory.__name__}({call}) failed ({e}){takes}; set ann.kwargs"
        ) from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"ann.model = {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    state = load_state_dict_file(weights, device)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        kinds = (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", shapes))
        for what, items in kinds:
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{what}: {', '.join(items[:5])}{more}")
        raise CheckpointError(
            f"{weights} does not match {spec} ({'; '.join(parts)}); check ann.model and ann.kwargs"
        )
    model.load_state_dict(state)
    return model.to(device).eval()
