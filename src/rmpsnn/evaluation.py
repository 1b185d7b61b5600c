"""The one accuracy loop: every evaluation in rmpsnn (ANN training, the trainer's evaluation of a
spiking model, the converter's ANN reference, the analysis monitors) counts top-1 hits here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .data import ImageArrays
from .data import transforms as T
from .errors import DataError
from .limits import probe_model

__all__ = [
    "check_labels",
    "check_model_matches_data",
    "evaluate_arrays",
    "normalised",
    "top1",
]


def check_labels(labels: torch.Tensor, num_outputs: int, *, what: str = "the data") -> None:
    """Refuse labels a model with ``num_outputs`` classes cannot be scored on: an accuracy over
    labels it can never predict would be a silent wrong number."""
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise DataError(f"{what}: labels must be class indices (integers), got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_outputs):
        raise DataError(
            f"{what}: labels run from {int(labels.min())} to {int(labels.max())}, but the model has "
            f"{num_outputs} outputs (classes 0..{num_outputs - 1}); evaluate it on the data it was trained "
            f"on, or train a model for these classes"
        )


def check_model_matches_data(
    model: nn.Module,
    info: dict,
    *,
    num_classes: int,
    input_shape,
    where: str,
    data_name: str = "the data",
    time_major: bool = False,
) -> None:
    """The checkpoint ``where`` (``info`` as :func:`rmpsnn.checkpoint.load_model` returns it) can be
    evaluated on data of ``num_classes`` classes and ``input_shape`` images: the image shape it was
    trained on (when the checkpoint records it), and as many outputs as classes (one forward of
    one zero sample tells)."""
    trained = (info.get("data") or {}).get("input_shape")
    probe_shape = list(trained) if isinstance(trained, list) and trained else list(input_shape)
    outputs = probe_model(model, probe_shape, time_major=time_major, what=where).outputs
    if outputs != num_classes:
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        trained_on = (
            (config.get("data") or {}).get("dataset", "?") if isinstance(config.get("data"), dict) else "?"
        )
        raise DataError(
            f"{where} scores {outputs} classes but {data_name} has {num_classes}; evaluate it on the "
            f"data set it was trained on ({trained_on})"
        )
    if probe_shape != list(input_shape):
        raise DataError(
            f"{where} was trained on images of shape {probe_shape} (C, H, W) but {data_name} gives "
            f"{list(input_shape)}; evaluate it on images of the size it was trained on"
        )


@torch.no_grad()
def top1(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Top-1 accuracy of ``model`` (in eval mode) over ``batches`` of ``(inputs, labels)``.

    Inputs go through ``prepare`` (e.g. move, decode and normalise a batch) or are moved to
    ``device`` (default: the model's).  Returns ``{"correct", "images", "accuracy", "seconds",
    "images_per_s"}``; the counts are this process's (add them up across processes under DDP).
    """
    model.eval()
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = n = 0
    t0 = time.perf_counter()
    for x, y in batches:
        x = prepare(x) if prepare is not None else x.to(device)
        out = model(x)
        check_labels(y, out.shape[-1])
        correct += int((out.argmax(-1) == y.to(x.device)).sum())
        n += len(y)
    secs = time.perf_counter() - t0
    return {
        "correct": correct,
        "images": n,
        "accuracy": correct / max(n, 1),
        "seconds": secs,
        "images_per_s": n / secs if secs > 0 else float("inf"),
    }


def normalised(data: ImageArrays, mean, std, batch_size: int = 500, limit: int | None = None):
    """Yield ``(normalised float images, labels)`` batches of ``data`` (no augmentation)."""
    norm = T.Normalize(mean, std)
    n = len(data) if limit is None else min(limit, len(data))
    imgs, labels = data.tensors()
    for i in range(0, n, batch_size):
        yield norm(T.to_float(imgs[i : min(i + batch_size, n)])), labels[i : min(i + batch_size, n)]


def evaluate_arrays(model, data: ImageArrays, mean, std, device="cpu", limit: int | None = None) -> float:
    """Top-1 accuracy of ``model`` on in-memory images normalised with ``mean``/``std``."""
    return top1(model, normalised(data, mean, std, limit=limit), device=device)["accuracy"]
