"""Model registry: ``create(name, **kwargs)``, ``list_models()``; each builder registers beside
its code (``@register("cpu_net", kind="snn")``) in :data:`MODELS`, a
:class:`rmpsnn.registry.Registry`."""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable

from torch import nn

from ..errors import ConfigError, InputError
from ..registry import Registry

__all__ = ["MODELS", "builder", "check_kwargs", "create", "list_models", "register"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register(name: str, kind: str = "ann", *, help: str | None = None, replace: bool = False):
    """Decorator: register a builder under ``name`` (``kind`` is "ann" or "snn": an SNN trains
    with RMP-Loss, an ANN is converted)."""
    if kind not in ("ann", "snn"):
        raise InputError(f"a model's kind is 'ann' or 'snn', got {kind!r}")
    return MODELS.register(name, help=help, replace=replace, kind=kind)


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (optionally only ``kind`` "ann" or "snn"), sorted."""
    return sorted(e.name for e in MODELS.entries() if kind is None or e.meta["kind"] == kind)


def builder(name: str):
    """The function registered under ``name`` (e.g. to inspect its arguments)."""
    return MODELS.get(name)


def _check_names(name: str, fn: Callable, kwargs: dict) -> None:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise InputError(f"model {name!r} takes no argument {names}; valid: {', '.join(params)}")


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name or keyword raises an :class:`InputError` listing the
    valid ones (a ``TypeError`` raised *inside* a builder is a bug and propagates unchanged)."""
    fn = builder(name)
    _check_names(name, fn, kwargs)
    _check_sizes(name, kwargs)
    return fn(**kwargs)


def check_kwargs(name: str, kwargs: dict, *, where: str = "model.kwargs") -> None:
    """Raise a one-line :class:`ConfigError` naming ``where`` when ``kwargs`` do not build model
    ``name``: an unknown keyword, a wrong size or type.  The model is built on the ``meta``
    device (no memory, no time), so a configuration fails before its data are loaded."""
    import torch

    fn = MODELS.get(name)
    for key, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"{where}.{key} must be finite, got {value!r}")
    try:
        _check_names(name, fn, kwargs)
        _check_sizes(name, kwargs)
        with torch.device("meta"):
            fn(**kwargs)
    except InputError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as e:
        line = str(e).splitlines()[0] if str(e) else type(e).__name__
        unknown = re.search(r"unexpected keyword argument '(\w+)'", line)
        if unknown:  # a typo reaching an inner helper: name the key and what the model takes
            raise ConfigError(_unknown_key_message(name, fn, unknown.group(1), where)) from None
        raise ConfigError(f"{where} = {kwargs!r} do not build model {name!r}: {line}") from None


def _unknown_key_message(name: str, fn: Callable, key: str, where: str) -> str:
    params = inspect.signature(fn).parameters.values()
    named = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    near = difflib.get_close_matches(key, named, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    passes_on = any(p.kind is p.VAR_KEYWORD for p in params)
    extra = " and keywords it passes on (the zoo's spiking models: tau, v_th, surrogate, reset, neuron)"
    takes = ", ".join(named) + (extra if passes_on else "")
    return f"{where}.{key}: model {name!r} takes no argument {key!r}{hint}; it takes {takes}"


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
