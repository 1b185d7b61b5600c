"""Direct training of spiking networks with surrogate gradients and RMP-Loss (a compact loop;
the full trainer with run directories, resume and DDP is tracked separately).

Loss (RMP-Loss eq. 11): ``CE(read-out, y) + λ(n) · L_RMP(u_pre of every LIF layer)`` with the
rise-then-fall λ of eq. 12, evaluated per step at the fractional epoch ``n``.  Evaluation
reports accuracy and the quantisation error (mean |Dis|, eq. 8) over the test set.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data import ImageArrays
from ..losses import QuantizationErrorMeter, rmp_lambda, rmp_loss
from ..models import create
from ..neurons import MembraneRecorder
from .ann import _prepare_data, _sgd_warmup_cosine, normalised

__all__ = ["evaluate_snn", "train_snn"]


@torch.no_grad()
def evaluate_snn(model, data: ImageArrays, mean, std, device="cpu", batch_size: int = 250) -> dict:
    """Accuracy and quantisation error (per layer and overall) of a spiking model."""
    model.eval()
    meter = QuantizationErrorMeter()
    correct = n = 0
    with MembraneRecorder(model, detach=True, on_record=lambda name, u: meter.update({name: u})):
        for x, y in normalised(data, mean, std, batch_size=batch_size):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
            n += len(y)
    q = meter.compute()
    return {
        "accuracy": correct / max(n, 1),
        "quantization_error": q["mean_abs"],
        "quantization_mse": q["mean_sq"],
        "per_layer": q["per_layer"],
    }


def train_snn(
    model_name: str = "cpu_net",
    *,
    data: str | None = "shared",
    timesteps: int = 4,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    rmp: bool = True,
    k: float = 0.1,
    p: float = 2,
    model_kwargs: dict | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    time_budget_s: float | None = None,
    log: Callable[[str], None] = print,
):
    """Train a registered spiking model (SGD + Nesterov, warm-up then cosine, crop + flip);
    ``rmp=True`` adds ``λ(n)·RMP-Loss``.  Returns ``(model, info)`` with per-epoch metrics."""
    torch.manual_seed(seed)
    train, test, mean, std, loader = _prepare_data(data, train_limit, test_limit, seed, batch_size, device)
    model = create(model_name, num_classes=train.num_classes, timesteps=timesteps, **(model_kwargs or {}))
    model = model.to(device)
    opt, sched = _sgd_warmup_cosine(model, lr, weight_decay, len(loader), epochs)
    steps = len(loader)
    history, t_start = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        sums = {"ce": 0.0, "rmp": 0.0, "correct": 0, "seen": 0}
        for step, (x, y) in enumerate(loader):
            with MembraneRecorder(model) if rmp else contextlib.nullcontext() as rec:
                out = model(x)
            ce = F.cross_entropy(out, y)
            lam = rmp_lambda(epoch + step / steps, epochs, k) if rmp else 0.0
            reg = rmp_loss(rec.membranes, p=p) if rmp else torch.zeros(())
            loss = ce + lam * reg
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"train-snn: loss became {loss.item()} at epoch {epoch}, step {step}; "
                    f"lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["ce"] += float(ce.detach()) * len(y)
            sums["rmp"] += float(reg.detach()) * len(y)
            sums["correct"] += int((out.argmax(1) == y).sum())
            sums["seen"] += len(y)
        ev = evaluate_snn(model, test, mean, std, device)
        rec_ = {
            "epoch": epoch + 1,
            "ce": sums["ce"] / sums["seen"],
            "rmp": sums["rmp"] / sums["seen"],
            "lambda": rmp_lambda(epoch + 1, epochs, k) if rmp else 0.0,
            "train_accuracy": sums["correct"] / sums["seen"],
            "test_accuracy": ev["accuracy"],
            "quantization_error": ev["quantization_error"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec_)
        log(
            f"epoch {epoch + 1:>3}/{epochs}  CE {rec_['ce']:.3f}  RMP {rec_['rmp']:.3f}  "
            f"train {rec_['train_accuracy']:.3f}  test {ev['accuracy']:.4f}  "
            f"q-err {ev['quantization_error']:.4f}  ({rec_['seconds']:.0f} s)"
        )
        if time_budget_s is not None and time.perf_counter() - t_start > time_budget_s:
            log(f"time budget of {time_budget_s:.0f} s reached after {epoch + 1} epochs")
            break
    info = {
        "mean": mean,
        "std": std,
        "history": history,
        "final": ev,
        "seconds": time.perf_counter() - t_start,
        "train_images": len(train),
        "test_images": len(test),
    }
    return model.eval(), info
