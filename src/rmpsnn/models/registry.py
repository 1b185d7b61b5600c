"""Model registry: ``create(name, **kwargs)``, ``list_models()`` (one file per model family)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["builder", "create", "list_models", "register"]

_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register(name: str, kind: str = "ann"):
    """Decorator: register a builder under ``name`` (``kind`` is "ann" or "snn")."""

    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = (fn, kind)
        return fn

    return deco


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (optionally only ``kind`` "ann" or "snn"), sorted."""
    return sorted(n for n, (_, k) in _MODELS.items() if kind is None or k == kind)


def builder(name: str):
    """The function registered under ``name`` (e.g. to inspect its arguments)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name][0]


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise a ``ValueError`` listing the valid ones."""
    fn = builder(name)
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from e
