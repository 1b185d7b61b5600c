"""Model registry: ``create(name, **kwargs)``, ``list_models()`` (one file per model family)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from ..errors import InputError

__all__ = ["builder", "create", "list_models", "register"]

_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register(name: str, kind: str = "ann"):
    """Decorator: register a builder under ``name`` (``kind`` is "ann" or "snn")."""

    def deco(fn):
        if name in _MODELS:
            raise InputError(f"model {name!r} is registered twice")
        _MODELS[name] = (fn, kind)
        return fn

    return deco


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (optionally only ``kind`` "ann" or "snn"), sorted."""
    return sorted(n for n, (_, k) in _MODELS.items() if kind is None or k == kind)


def builder(name: str):
    """The function registered under ``name`` (e.g. to inspect its arguments)."""
    if name not in _MODELS:
        raise InputError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name][0]


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name or keyword raises an :class:`InputError` listing the
    valid ones (a ``TypeError`` raised *inside* a builder is a bug and propagates unchanged)."""
    fn = builder(name)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise InputError(
                f"model {name!r} takes no argument {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(params)}"
            )
    _check_sizes(name, kwargs)
    return fn(**kwargs)


_SIZE_ARGS = ("num_classes", "timesteps", "in_channels", "image_size", "width")


def _check_sizes(name: str, kwargs: dict) -> None:
    """Sizes must be positive integers (a zero width otherwise fails deep inside a convolution)."""
    for key in _SIZE_ARGS:
        if key not in kwargs:
            continue
        value = kwargs[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise InputError(f"model {name!r}: {key} must be positive integers, got {value!r}")
