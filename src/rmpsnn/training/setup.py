"""What a run is built from: its data (sharded for this process) and its model's keywords."""

from __future__ import annotations

import inspect

from ..data import registry as data_registry
from ..data.registry import DataBundle, LoaderContext
from ..errors import ConfigError
from ..models.registry import builder
from .config import TrainConfig
from .distributed import Dist

__all__ = ["build_data", "model_kwargs"]


def build_data(cfg: TrainConfig, dist: Dist) -> DataBundle:
    """The data registry's bundle for ``cfg.data``, sharded for this process (``dist``)."""
    bs = cfg.optim.batch_size
    if bs % dist.world_size:
        raise ConfigError(
            f"optim.batch_size={bs} (the global batch) must be divisible by the {dist.world_size} processes"
        )
    ctx = LoaderContext(
        batch_size=bs // dist.world_size,
        seed=cfg.run.seed,
        timesteps=cfg.model.timesteps,
        device=dist.device,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    return data_registry.build_data(cfg.data, ctx)


def model_kwargs(cfg: TrainConfig, data: DataBundle) -> dict:
    """The builder keywords of ``cfg.model``: what the data fixes (classes, channels, size) and, for
    a spiking model, T and the read-out -- each to the builders that name it -- then
    ``model.kwargs``."""
    m = cfg.model
    params = inspect.signature(builder(m.name)).parameters
    derived = {
        "num_classes": data.num_classes,
        "timesteps": m.timesteps,
        "readout": m.readout,
        "in_channels": data.in_channels,
        "image_size": data.image_size,
    }
    kw = {k: v for k, v in derived.items() if k in params}
    kw.update(m.kwargs)
    if kw["num_classes"] != data.num_classes:
        raise ConfigError(
            f"model.kwargs.num_classes={kw['num_classes']} but {cfg.data.dataset} has "
            f"{data.num_classes} classes (labels 0..{data.num_classes - 1}); drop the override "
            f"(the model takes the data's class count)"
        )
    if "width" in kw:
        kw["width"] = list(kw["width"])
    return kw
