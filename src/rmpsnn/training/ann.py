"""Supervised training of the ANNs that are converted to SNNs (``rmpsnn train-ann``).

Recipe: SGD with Nesterov momentum 0.9, linear warm-up (first epoch, at most 10 % of the steps)
then cosine learning-rate decay to 0, weight decay (not on biases and BN),
random crop (padding 4) and horizontal flip, cross-entropy; inputs normalised with the training
set's per-channel statistics (stored in the checkpoint, because the SNN must see the same input).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..checkpoint import save_model
from ..data import ArrayLoader, ImageArrays
from ..data import transforms as T
from ..data.images import require_classes
from ..data.resolve import channel_stats, load_static
from ..errors import InputError, NonFiniteError
from ..evaluation import top1
from ..models import create
from ..models.registry import builder

__all__ = ["evaluate_arrays", "normalised", "param_groups", "train_ann", "warmup_cosine"]


def normalised(data: ImageArrays, mean, std, batch_size: int = 500, limit: int | None = None):
    """Yield ``(normalised float images, labels)`` batches of ``data`` (no augmentation)."""
    norm = T.Normalize(mean, std)
    n = len(data) if limit is None else min(limit, len(data))
    imgs, labels = data.tensors()
    for i in range(0, n, batch_size):
        yield norm(T.to_float(imgs[i : min(i + batch_size, n)])), labels[i : min(i + batch_size, n)]


@torch.no_grad()
def evaluate_arrays(model, data: ImageArrays, mean, std, device="cpu", limit: int | None = None) -> float:
    return top1(model, normalised(data, mean, std, limit=limit), device=device)["accuracy"]


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


def _prepare_data(data, train_limit, test_limit, seed, batch_size, device):
    """Train/test arrays (class-balanced subsets when limited), the training set's channel
    statistics, and the augmented training loader (crop + flip + normalise)."""
    train = load_static(data, "train").balanced(train_limit, seed=seed)
    test = load_static(data, "test").balanced(test_limit, seed=seed)
    mean, std = channel_stats(train)
    aug = T.Compose(
        [T.RandomCrop(train.images.shape[-1], 4), T.RandomHorizontalFlip(), T.Normalize(mean, std)]
    )
    loader = ArrayLoader(
        train, batch_size, shuffle=True, seed=seed, batch_transform=aug, drop_last=True, device=device
    )
    return train, test, mean, std, loader


def _sgd_warmup_cosine(model, lr: float, weight_decay: float, steps_per_epoch: int, epochs: int):
    """SGD (Nesterov 0.9) over :func:`param_groups`; per-step schedule: linear warm-up over the
    first epoch (at most 10 % of all steps), then cosine decay to 0."""
    opt = torch.optim.SGD(param_groups(model, lr, weight_decay), lr=lr, momentum=0.9, nesterov=True)
    total = epochs * steps_per_epoch
    warm = max(1, min(steps_per_epoch, total // 10))  # the wide final layer diverges without warm-up
    return opt, warmup_cosine(opt, warm, total)


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Per-step learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay
    from 1 to 0 at ``total_steps``."""

    def lr_factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def _check_train_ann_args(epochs, batch_size, lr, weight_decay, train_limit, test_limit, time_budget_s):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("train_limit", train_limit), ("test_limit", test_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a positive integer, or None for the whole split; got {value!r}")
    for name, value, lowest in (
        ("lr", lr, 0),
        ("weight_decay", weight_decay, None),
        ("time_budget_s", time_budget_s, 0),
    ):
        if value is None:
            continue
        ok = (
            math.isfinite(value)
            and abs(value) < 3.4e38
            and (value > lowest if lowest is not None else value >= 0)
        )
        if not ok:
            raise InputError(
                f"{name} must be a finite {'positive' if lowest is not None else 'non-negative'} number, "
                f"got {value!r}"
            )


def train_ann(
    model_name: str = "ann_cpu_net",
    *,
    data: str | None = "shared",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    activation: str = "relu",
    qcfs_levels: int = 8,
    model_kwargs: dict | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | None = None,
    time_budget_s: float | None = None,
    log: Callable[[str], None] = print,
):
    """Train a registered ANN on a static image data set; returns ``(model, info)``.

    ``time_budget_s`` stops after the epoch during which the budget ran out (the cosine schedule
    still spans ``epochs``).  ``out`` saves a safetensors checkpoint with the model name, its
    arguments, the input statistics and the accuracies.
    """
    _check_train_ann_args(epochs, batch_size, lr, weight_decay, train_limit, test_limit, time_budget_s)
    torch.manual_seed(seed)
    train, test, mean, std, loader = _prepare_data(data, train_limit, test_limit, seed, batch_size, device)
    require_classes(train)
    kwargs = {"num_classes": train.num_classes, "activation": activation, **(model_kwargs or {})}
    params = inspect.signature(builder(model_name)).parameters
    for key, value in (("in_channels", train.images.shape[1]), ("image_size", train.images.shape[-1])):
        if key in params:  # the model takes the data's shape (digits: 1 x 8 x 8), unless told otherwise
            kwargs.setdefault(key, value)
    if activation == "qcfs":
        kwargs["qcfs_levels"] = qcfs_levels
    model = create(model_name, **kwargs).to(device)
    if len(loader) == 0:
        raise InputError(
            f"batch_size={batch_size} is larger than the training set ({len(train)} images); lower it"
        )
    opt, sched = _sgd_warmup_cosine(model, lr, weight_decay, len(loader), epochs)
    history = []
    t_start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0
        for step, (x, y) in enumerate(loader):
            out_ = model(x)
            loss = F.cross_entropy(out_, y)
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"train-ann: loss became {loss.item()} at epoch {epoch}, step {step}; "
                    f"lower the learning rate (now {sched.get_last_lr()[0]:.4g})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out_.argmax(1) == y).sum())
            seen += len(y)
        test_acc = evaluate_arrays(model, test, mean, std, device)
        rec = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_accuracy": test_acc,
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        log(
            f"epoch {epoch + 1:>3}/{epochs}  loss {rec['loss']:.3f}  train {rec['train_accuracy']:.3f}  "
            f"test {test_acc:.4f}  ({rec['seconds']:.0f} s)"
        )
        if time_budget_s is not None and time.perf_counter() - t_start > time_budget_s:
            log(f"time budget of {time_budget_s:.0f} s reached after {epoch + 1} epochs")
            break
    info = {
        "mean": mean,
        "std": std,
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "data": str(data),
        "train_images": len(train),
        "seconds": time.perf_counter() - t_start,
    }
    if out:
        save_model(out, model, model_name=model_name, model_kwargs=kwargs, **info)
        log(f"saved {out}")
    return model.eval(), info
