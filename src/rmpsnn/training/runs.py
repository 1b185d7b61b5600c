"""Open a finished (or running) training run for evaluation: the one place that turns a run
directory or checkpoint into its model, configuration and test data (``rmpsnn evaluate``, the
report)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_model, resolve_checkpoint
from ..data.registry import DataBundle
from ..devices import resolve_device
from ..errors import CheckpointError, InputError
from ..evaluation import check_model_matches_data
from ..limits import check_simulation, whole_steps
from ..neurons import SpikingNeuron
from .config import TrainConfig, load_config
from .distributed import Dist
from .setup import build_data

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    checkpoint: Path
    model: nn.Module
    info: dict
    cfg: TrainConfig
    data: DataBundle
    device: torch.device  # where the model and the data's batches are

    @property
    def v_th(self) -> float | None:
        """The threshold the model's spiking neurons share (read from the neurons, not the
        config); ``None`` when they differ, are per channel, or there are none -- then each
        layer is measured against its own (``evaluate_model(v_th=None)``)."""
        values = {
            float(m.v_th) for m in self.model.modules() if isinstance(m, SpikingNeuron) and m.v_th.ndim == 0
        }
        per_channel = any(isinstance(m, SpikingNeuron) and m.v_th.ndim > 0 for m in self.model.modules())
        return values.pop() if len(values) == 1 and not per_channel else None


def load_run(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",  # or "auto"
    overrides: list[str] | None = None,
    timesteps: int | None = None,
) -> LoadedRun:
    """The model of ``path`` (a run directory: its best checkpoint; or a ``.safetensors`` of
    ``rmpsnn train``/``train-ann``) with its configuration (``overrides`` applied; augmentation
    off) and the data it was trained on; ``timesteps`` evaluates a spiking model at another T."""
    device = resolve_device(device)  # first: a wrong device is the one error, whatever the path
    checkpoint = resolve_checkpoint(path)
    # the model owns T: another T builds it with that T (docs/neurons.md, "Time")
    build = None if timesteps is None else {"timesteps": whole_steps(timesteps, what="load_run(timesteps=)")}
    model, info = load_model(checkpoint, device=device, kwargs=build)
    if "config" not in info:
        raise InputError(
            f"{checkpoint} was not written by `rmpsnn train` or `train-ann`; it stores no data configuration"
        )
    overrides = ["data.augment=none", *(overrides or [])]
    if timesteps is not None:
        overrides.append(f"model.timesteps={timesteps}")
    cfg = load_config(info["config"], overrides)
    data = build_data(cfg, Dist(device=device))
    check_model_matches_data(
        model, info, num_classes=data.num_classes, input_shape=data.input_shape, where=str(checkpoint),
        data_name=f"data set {cfg.data.dataset!r}", time_major=data.time_major,
    )  # fmt: skip
    check_simulation(
        model, data.input_shape, timesteps=getattr(model, "timesteps", None) or 1, batch_size=100,
        training=False, time_major=data.time_major, what=f"{checkpoint} ({info['model']})",
        lower="lower --timesteps" if timesteps is not None else "the checkpoint's timesteps are damaged",
        error=InputError if timesteps is not None else CheckpointError,
    )  # fmt: skip
    return LoadedRun(checkpoint, model, info, cfg, data, device)
