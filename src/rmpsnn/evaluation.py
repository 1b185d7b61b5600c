"""The one accuracy loop: every evaluation in rmpsnn (ANN training, the trainer's evaluation of a
spiking model, the converter's ANN reference, the analysis monitors) counts top-1 hits here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["top1"]


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
