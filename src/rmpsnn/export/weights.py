"""Weights as safetensors next to a small JSON of the architecture: loadable without pickle,
by rmpsnn (:func:`load_exported`) or by any safetensors reader plus the JSON."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .. import __version__
from ..checkpoint import load_model, save_model
from ..io import write_json

__all__ = ["export_safetensors", "load_exported"]


def export_safetensors(
    model: nn.Module, out_dir: str | Path, *, model_name: str, model_kwargs: dict, **info
) -> dict:
    """Write ``out_dir/model.safetensors`` (weights and buffers, metadata included) and
    ``out_dir/model.json`` (model name, constructor arguments, tensor names and shapes, ``info``
    such as the input normalisation)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = save_model(
        out / "model.safetensors", model, model_name=model_name, model_kwargs=model_kwargs, **info
    )
    arch = {
        "format": "rmpsnn-safetensors-v1",
        "rmpsnn_version": __version__,
        "model": model_name,
        "kwargs": model_kwargs,
        "tensors": {k: list(v.shape) for k, v in model.state_dict().items()},
        "info": info,
        "load": "rmpsnn.export.load_exported(dir)  or  rmpsnn.models.create(model, **kwargs) + safetensors",
    }
    write_json(out / "model.json", arch)
    return {"weights": weights, "architecture": out / "model.json"}


def load_exported(out_dir: str | Path, device="cpu") -> tuple[nn.Module, dict]:
    """The model written by :func:`export_safetensors`; returns ``(model, info)``."""
    return load_model(Path(out_dir) / "model.safetensors", device=device)
