"""The input a stored model takes, for tracing it (NIR export): from the shape given, from the
data the model was trained on (recorded in its checkpoint), or from the model's own arguments
(builders with an ``image_size``) -- never guessed."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from ..models.registry import builder

__all__ = ["input_shape_of", "sample_input"]


def input_shape_of(info: dict, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """``(C, H, W)`` of one input of the model that ``info`` (``load_model``'s) describes."""
    if input_shape:
        return tuple(int(v) for v in input_shape)
    data = info.get("data") or {}
    if "input_shape" in data:
        return tuple(data["input_shape"])
    declared = {k: p.default for k, p in inspect.signature(builder(info["model"])).parameters.items()}
    declared.update(info.get("kwargs") or {})
    if isinstance(declared.get("image_size"), int) and isinstance(declared.get("in_channels"), int):
        return (declared["in_channels"], declared["image_size"], declared["image_size"])
    raise InputError(
        f"the checkpoint records no input shape and {info['model']} takes any image size; give it "
        f"(--input-shape C H W)"
    )


def sample_input(model: nn.Module, info: dict, input_shape: Sequence[int] | None = None) -> torch.Tensor:
    """A zero batch of one input as ``model`` takes it: ``[1, C, H, W]`` for images, and
    ``[T, 1, C, H, W]`` for the time-major event frames a model trained on events takes."""
    shape = input_shape_of(info, input_shape)
    data = info.get("data") or {}
    if data.get("time_major", False):
        return torch.zeros(getattr(model, "timesteps", 1), 1, *shape)
    return torch.zeros(1, *shape)
