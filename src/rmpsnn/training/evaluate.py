"""Evaluation during (and after) training: test accuracy and the quantisation error of RMP-Loss
eq. 8 (mean ``|Dis|`` and mean ``Dis²``) per spiking layer and overall, each layer measured
against its own neurons' threshold (a per-channel or learned one included)."""

from __future__ import annotations

import contextlib

import torch

from ..evaluation import top1
from ..losses import QuantizationErrorMeter
from ..neurons import MembraneRecorder, SpikingNeuron
from .distributed import Dist

__all__ = ["evaluate_model"]


@torch.no_grad()
def evaluate_model(
    model,
    batches,
    *,
    v_th: float | None = None,
    device="cpu",
    dist: Dist | None = None,
    data=None,
) -> dict:
    """Accuracy and quantisation error (overall and per spiking layer) of ``model`` over
    ``batches`` of ``(x, y)``; under DDP the counts are summed over processes.

    ``v_th``: ``None`` (default) measures every layer against its neurons' own threshold; a
    float puts one threshold on every layer instead (a what-if)."""
    dist = dist or Dist(device=torch.device(device))
    neurons = {n: m for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
    meter = QuantizationErrorMeter()

    def measure(name: str, u: torch.Tensor) -> None:
        # streamed layer by layer (nothing kept); the threshold is the neuron's own, as
        # MembraneRecorder.thresholds records it
        meter.update({name: u}, v_th=[neurons[name].v_th if v_th is None else v_th])

    prepare = (lambda x: data.prepare(x, device)) if data is not None else None
    record = (
        MembraneRecorder(model, detach=True, on_record=measure)
        if neurons
        else contextlib.nullcontext()  # an ANN: accuracy only
    )
    with record:
        r = top1(model, batches, device=device, prepare=prepare)
    return _reduce(r["correct"], r["images"], meter, dist)


def _reduce(correct: int, n: int, meter: QuantizationErrorMeter, dist: Dist) -> dict:
    """The counts of every process summed, as the record of one evaluation."""
    names = list(meter.count)  # network order (the order of the first forward; same on every rank)
    vec = torch.tensor(
        [correct, n]
        + [meter.abs_sum[k] for k in names]
        + [meter.sq_sum[k] for k in names]
        + [meter.count[k] for k in names],
        dtype=torch.float64,
    )
    vec = dist.all_reduce(vec)
    L = len(names)
    correct, n = vec[0].item(), vec[1].item()
    abs_s, sq_s, cnt = vec[2 : 2 + L], vec[2 + L : 2 + 2 * L], vec[2 + 2 * L :]
    total = cnt.sum().item()
    return {  # no spiking layer (an ANN): no quantisation error
        "accuracy": correct / max(n, 1),
        "images": int(n),
        "quantization_error": abs_s.sum().item() / total if total else None,
        "quantization_mse": sq_s.sum().item() / total if total else None,
        "per_layer": {
            k: {"mean_abs": (abs_s[i] / cnt[i]).item(), "mean_sq": (sq_s[i] / cnt[i]).item()}
            for i, k in enumerate(names)
        },
    }
