"""Per-layer monitors over a data set: pre-spike membrane-potential histograms (streaming, fixed
bins), firing rates and the quantisation error of every spiking layer.

Nothing grows with the data: each batch's membranes are binned into fixed-width histograms
(``torch.histc``) and reduced to sums, so a whole test set can be monitored in a few MB.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..evaluation import top1
from ..io import write_text
from ..losses import QuantizationErrorMeter
from ..neurons import MembraneRecorder, Neuron

__all__ = ["LayerStats", "collect_layer_stats"]


@dataclass
class LayerStats:
    """What :func:`collect_layer_stats` measured.  ``layers[name]`` holds ``neurons`` (per sample),
    ``firing_rate`` (spikes per neuron per timestep), ``hist`` (counts over ``edges``), ``below``
    / ``above`` (values outside the histogram range), ``quantization_error`` (mean |Dis|, eq. 8)
    and ``quantization_mse`` (mean Dis²)."""

    edges: list[float]
    v_th: float | None  # the threshold given to collect_layer_stats, or the first layer's (plots)
    images: int = 0
    accuracy: float | None = None
    layers: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LayerStats:
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_text(path, json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LayerStats:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def density(self, layer: str) -> tuple[list[float], list[float]]:
        """Bin centres and probability density of ``layer``'s membrane potentials (the mass
        outside the range counts in the normalisation, so curves of two runs compare)."""
        h = self.layers[layer]
        total = sum(h["hist"]) + h["below"] + h["above"]
        width = self.edges[1] - self.edges[0]
        centres = [(a + b) / 2 for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)]
        return centres, [c / max(total, 1) / width for c in h["hist"]]


def limited_batches(batches: Iterable, prepare: Callable | None, device, max_images: int | None):
    """``(x on device / prepared, y)`` from ``batches`` until ``max_images`` have been given."""
    seen = 0
    for x, y in batches:
        yield (prepare(x) if prepare is not None else x.to(device)), y
        seen += len(y)
        if max_images is not None and seen >= max_images:
            return


@torch.no_grad()
def collect_layer_stats(
    model: torch.nn.Module,
    batches: Iterable,
    *,
    bins: int = 160,
    value_range: tuple[float, float] = (-1.5, 2.5),
    v_th: float | None = None,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    prepare: Callable | None = None,
) -> LayerStats:
    """Run ``model`` (eval mode) over ``batches`` of ``(x, y)`` and monitor every spiking layer
    (:class:`rmpsnn.neurons.Neuron`: LIF, IF, PLIF, ...).  The quantisation error splits each
    layer's u into "spikes to 1" and "stays at 0" at that layer's own threshold (scalar, per
    channel or learned), unless one ``v_th`` for all layers is given."""
    model.eval()
    lo, hi = value_range
    neurons = {n: m for n, m in model.named_modules() if isinstance(m, Neuron)}
    if not neurons:
        raise InputError(f"{type(model).__name__} has no spiking layers (LIF/IF) to monitor")
    zero = {"below": 0, "above": 0, "spikes": 0.0, "count": 0, "neurons": 0}
    meter = QuantizationErrorMeter()
    first = {}
    acc = {n: {"hist": torch.zeros(bins, dtype=torch.float64), **zero} for n in neurons}

    def on_membrane(name: str, u: torch.Tensor) -> None:
        a = acc[name]
        uf = u.detach().float()
        a["hist"] += torch.histc(uf, bins, lo, hi).double().cpu()
        a["below"] += int((uf < lo).sum())
        a["above"] += int((uf > hi).sum())
        th = v_th if v_th is not None else neurons[name].threshold_like(uf).detach()
        first.setdefault("v_th", th)
        meter.update({name: uf}, v_th={name: th})
        a["neurons"] = u[0, 0].numel() if u.ndim > 2 else u.shape[-1]

    def on_spikes(name: str):
        def hook(_module, _inputs, out):
            s = out[0] if isinstance(out, tuple) else out
            acc[name]["spikes"] += float((s != 0).sum())
            acc[name]["count"] += s.numel()

        return hook

    handles = [m.register_forward_hook(on_spikes(n)) for n, m in neurons.items()]
    try:
        with MembraneRecorder(model, detach=True, on_record=on_membrane):
            # batches arrive prepared; top1 moves them to the model's device (a no-op if there)
            res = top1(model, limited_batches(batches, prepare, device, max_images))
        images, correct = res["images"], res["correct"]
    finally:
        for h in handles:
            h.remove()
    edges = torch.linspace(lo, hi, bins + 1).tolist()
    th0 = first.get("v_th", v_th)
    shown = float(th0) if th0 is not None and (not torch.is_tensor(th0) or th0.numel() == 1) else None
    stats = LayerStats(edges=edges, v_th=shown, images=images, accuracy=correct / max(images, 1))
    per_layer = meter.compute()["per_layer"] if meter.count else {}
    for n, a in acc.items():
        q = per_layer.get(n, {"mean_abs": 0.0, "mean_sq": 0.0})  # a layer never reached
        stats.layers[n] = {
            "neurons": a["neurons"],
            "firing_rate": a["spikes"] / max(a["count"], 1),
            "hist": a["hist"].tolist(),
            "below": a["below"],
            "above": a["above"],
            "quantization_error": q["mean_abs"],
            "quantization_mse": q["mean_sq"],
        }
    return stats
