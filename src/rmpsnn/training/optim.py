"""Optimiser and learning-rate schedule of every training run (ANN and SNN alike)."""

from __future__ import annotations

import math

import torch

__all__ = ["build_optimizer", "param_groups", "warmup_cosine"]


def param_groups(model, lr: float, weight_decay: float, scale_wide_linear: bool = True) -> list[dict]:
    """No weight decay on biases/BN; with ``scale_wide_linear``, a Linear layer with fan-in
    ``f > 512`` learns at ``lr * 512 / f``: one SGD step moves its outputs by about
    ``lr * |features|^2``, which for a flattened 256x8x8 feature map is hundreds of times more
    than for a conv layer."""
    groups = []
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        wide = scale_wide_linear and isinstance(m, torch.nn.Linear)
        scale = min(1.0, 512 / m.in_features) if wide else 1.0
        for p in own:
            groups.append(
                {"params": [p], "lr": lr * scale, "weight_decay": weight_decay if p.ndim > 1 else 0.0}
            )
    return groups


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Per-step learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay
    from 1 to 0 at ``total_steps``."""

    def lr_factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def build_optimizer(model, optim, steps_per_epoch: int):
    """``(optimizer, scheduler)`` of an ``optim`` config section: SGD (optionally Nesterov) or
    AdamW over :func:`param_groups`, stepped per batch by :func:`warmup_cosine` over
    ``optim.epochs``."""
    groups = param_groups(model, optim.lr, optim.weight_decay, scale_wide_linear=optim.scale_wide_linear)
    if optim.name == "sgd":
        opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov)
    else:
        opt = torch.optim.AdamW(groups, lr=optim.lr)
    total = optim.epochs * steps_per_epoch
    return opt, warmup_cosine(opt, round(optim.warmup_epochs * steps_per_epoch), total)
