"""The one accuracy loop: every evaluation in rmpsnn (ANN training, the trainer's evaluation of a
spiking model, the converter's ANN reference, the analysis monitors) counts top-1 hits here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .data import ImageArrays
from .data import transforms as T

__all__ = ["evaluate_arrays", "normalised", "top1"]


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
        correct += int((model(x).argmax(-1) == y.to(x.device)).sum())
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
