"""Operation counts and energy estimates of a spiking network against its ANN twin.

Convention (the one SNN papers use, e.g. RMP-Loss Sec. 5 and the works it cites):

* **ANN**: every Conv2d / Linear layer costs its multiply-accumulates, ``MACs = outputs x fan-in``
  per image (``fan-in = C_in/groups x k_h x k_w`` for a convolution).
* **SNN**: a layer whose input is events (spikes; in a directly trained net also the average of
  a pooled group of spikes) costs one accumulate per event and synapse: ``SOPs = Σ_events
  fan-out(event)``, counted exactly from the events that occurred -- an event at the border of a
  padded convolution reaches fewer outputs than one in the middle.  Any event value counts as
  one event (non-zero input), whatever its magnitude.
* The **first layer** of a direct-encoded SNN sees the analog image, so it costs MACs, counted as
  executed: once per image in rmpsnn's spiking models (the current of a static image is computed
  once and repeated over T), T times in a converted SNN that feeds the image at every step.
  Event-camera input (``[T, B, 2, H, W]`` frames of event counts) is events: each count is one
  event, so the first layer there costs SOPs weighted by the counts.
* Energy at 45 nm (Horowitz, ISSCC 2014): ``E_MAC = 4.6 pJ``, ``E_AC = 0.9 pJ``.  Memory access,
  batch norm (folded into the weights at inference), residual additions, pooling and neuron
  updates are not counted -- as in the papers these figures are compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .monitors import limited_batches

__all__ = ["E_AC_PJ", "E_MAC_PJ", "OperationCounts", "count_operations"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass
class OperationCounts:
    """Per-layer counts per image: ``ann_macs``, ``snn_macs`` (analog-input layers), ``snn_sops``,
    and ``input_event_rate`` (fraction of non-zero inputs, over the calls of that layer)."""

    images: int
    layers: dict[str, dict] = field(default_factory=dict)
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    def totals(self) -> dict:
        ann = sum(r["ann_macs"] for r in self.layers.values())
        macs = sum(r["snn_macs"] for r in self.layers.values())
        sops = sum(r["snn_sops"] for r in self.layers.values())
        e_ann = ann * self.e_mac_pj
        e_snn = macs * self.e_mac_pj + sops * self.e_ac_pj
        return {
            "ann_macs": ann,
            "snn_macs": macs,
            "snn_sops": sops,
            "ann_energy_uj": e_ann * 1e-6,
            "snn_energy_uj": e_snn * 1e-6,
            "energy_ratio_snn_to_ann": e_snn / e_ann if e_ann else float("nan"),
        }

    def rows(self) -> list[dict]:
        """One row per layer with energies in µJ per image, then a ``total`` row."""
        out = []
        for name, r in self.layers.items():
            e_ann = r["ann_macs"] * self.e_mac_pj * 1e-6
            e_snn = (r["snn_macs"] * self.e_mac_pj + r["snn_sops"] * self.e_ac_pj) * 1e-6
            out.append({"layer": name, **r, "ann_energy_uj": e_ann, "snn_energy_uj": e_snn})
        t = self.totals()
        out.append({"layer": "total", "type": "", "input_event_rate": None, **t})
        return out

    def to_markdown(self) -> str:
        lines = [
            "| layer | type | ANN MACs | SNN MACs | SNN SOPs | input events | ANN µJ | SNN µJ |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows():
            rate = "" if r["input_event_rate"] is None else f"{r['input_event_rate']:.3f}"
            lines.append(
                f"| {r['layer']} | {r.get('type', '')} | {r['ann_macs'] / 1e6:.2f} M "
                f"| {r['snn_macs'] / 1e6:.2f} M | {r['snn_sops'] / 1e6:.2f} M | {rate} "
                f"| {r['ann_energy_uj']:.3f} | {r['snn_energy_uj']:.3f} |"
            )
        t = self.totals()
        lines.append(
            f"\nPer image, {self.images} images; E_MAC = {self.e_mac_pj} pJ, E_AC = {self.e_ac_pj} pJ. "
            f"SNN / ANN energy = **{t['energy_ratio_snn_to_ann']:.3f}**."
        )
        return "\n".join(lines)


def _fan_in(m: nn.Module) -> int:
    if isinstance(m, nn.Conv2d):
        return m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    return m.in_features


def _sops(m: nn.Module, x: torch.Tensor, weighted: bool) -> float:
    """Σ over input events of their fan-out (exact, borders and stride included)."""
    ev = x.abs() if weighted else (x != 0).to(x.dtype)
    if isinstance(m, nn.Linear):
        return float(ev.sum()) * m.out_features
    # each input event reaches C_out/groups channels at every output position whose receptive
    # field covers it: summing a ones-kernel convolution over all outputs counts exactly that
    per_pos = ev.sum(1, keepdim=True)
    ones = torch.ones(1, 1, *m.kernel_size, dtype=x.dtype, device=x.device)
    cover = F.conv2d(per_pos, ones, stride=m.stride, padding=m.padding, dilation=m.dilation)
    return float(cover.sum()) * (m.out_channels // m.groups)


@torch.no_grad()
def count_operations(
    model: nn.Module,
    batches: Iterable,
    *,
    forward: Callable | None = None,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    prepare: Callable | None = None,
    e_mac_pj: float = E_MAC_PJ,
    e_ac_pj: float = E_AC_PJ,
) -> OperationCounts:
    """Count MACs and synaptic operations of every Conv2d / Linear layer of ``model`` over
    ``batches`` of ``(x, y)`` (see the module docstring for the convention).  ``forward(model,
    x)`` runs the model (default ``model(x)``; a converted SNN needs ``lambda m, x: m(x, T)``)."""
    model.eval()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if not layers:
        raise InputError(f"{type(model).__name__} has no Conv2d or Linear layers to count")
    zero = {"ann": 0.0, "macs": 0.0, "sops": 0.0, "events": 0.0, "inputs": 0.0}
    stats = {n: {"type": type(m).__name__, **zero} for n, m in layers.items()}
    state = {"first": None, "events_input": False}

    def hook(name):
        def fn(m, inputs, out):
            x = inputs[0]
            s = stats[name]
            per_sample = out.numel() // out.shape[0] * _fan_in(m)
            if s["ann"] == 0.0:
                s["ann"] = float(per_sample)  # per image, once (the ANN twin runs it once)
            if state["first"] is None:
                state["first"] = name
            if name == state["first"] and not state["events_input"]:
                s["macs"] += float(out.numel() * _fan_in(m))  # analog input: MACs as executed
            else:
                weighted = name == state["first"]  # event-camera frames: counts of events
                s["sops"] += _sops(m, x, weighted)
                s["events"] += float((x != 0).sum())
                s["inputs"] += float(x.numel())

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    run = forward or (lambda mod, x: mod(x))
    images = 0
    try:
        for x, y in limited_batches(batches, prepare, device, max_images):
            state["events_input"] = x.ndim == 5  # [T, B, C, H, W] event frames
            run(model, x)
            images += len(y)
    finally:
        for h in handles:
            h.remove()
    if images == 0:
        raise InputError("count_operations: no batches were given")
    counts = OperationCounts(images=images, e_mac_pj=e_mac_pj, e_ac_pj=e_ac_pj)
    for n, s in stats.items():
        counts.layers[n] = {
            "type": s["type"],
            "ann_macs": s["ann"],
            "snn_macs": s["macs"] / images,
            "snn_sops": s["sops"] / images,
            "input_event_rate": s["events"] / s["inputs"] if s["inputs"] else None,
        }
    return counts
