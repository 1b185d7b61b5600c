"""ANN -> SNN conversion with RMP (soft-reset) IF neurons and threshold balancing.

    snn = convert(ann, calibration_batches, reset="soft", balance="spike-max")
    result = evaluate_over_time(snn, test_batches, timesteps=[1, 2, 4, ..., 1024])

Threshold balancing (``balance=``), thresholds in activation units (see :mod:`.nodes`):

* ``"spike-max"`` -- Sengupta et al. (Front. Neurosci. 2019) as used by RMP-SNN (Han et al.,
  CVPR 2020): layer by layer, in order, run the SNN converted so far on the calibration data
  for ``balance_timesteps`` steps and set the layer's threshold to the largest input current it
  receives at any step;
* ``"act-max"`` -- Diehl et al. (IJCNN 2015): the largest ANN activation at that layer;
* ``"percentile"`` -- Rueckauer et al. (Front. Neurosci. 2017): the ``percentile``-th percentile
  (99.9 or 99.99) of the layer's positive ANN activations, robust to outliers;
* ``"qcfs"`` -- the trained threshold λ of each QCFS activation (Bu et al., ICLR 2022);
  ``"auto"`` picks it for QCFS networks and ``"spike-max"`` otherwise.

``scale`` multiplies every threshold (factors below 1 trade accuracy for latency, as in
RMP-SNN); ``per_channel=True`` balances each channel separately.  ``v_init="half"`` starts every
membrane at θ/2 (the default for QCFS networks), which centres the quantisation error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import fx, nn

from ..models.qcfs import QCFS
from .graph import ConversionError, build_snn_graph
from .nodes import IFNode, _StopForward

__all__ = ["BALANCE_METHODS", "ConvertedSNN", "convert", "evaluate_ann", "evaluate_over_time"]

BALANCE_METHODS = ("auto", "spike-max", "act-max", "percentile", "qcfs", "none")
ENCODINGS = ("direct", "poisson")


class ConvertedSNN(nn.Module):
    """The converted network: runs ``T`` steps in chunks whose steps are folded into the batch.

    ``forward(x, timesteps)`` takes a static batch ``[B, ...]`` and returns the accumulated
    read-out after every step, ``[T, B, classes]`` (the last layer integrates without spiking),
    so the prediction at every horizon comes from one simulation.
    """

    def __init__(
        self,
        graph: fx.GraphModule,
        if_names: Sequence[str],
        *,
        encoding: str = "direct",
        input_max: float = 1.0,
        seed: int = 0,
        chunk: int | None = None,
    ):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; valid values: {', '.join(ENCODINGS)}")
        self.graph_module = graph
        self.if_names = list(if_names)
        self.encoding = encoding
        self.input_max = float(input_max)
        self.seed = seed
        self.chunk = chunk

    @property
    def if_nodes(self) -> list[IFNode]:
        return [self.graph_module.get_submodule(n) for n in self.if_names]

    def thresholds(self) -> dict[str, list[float] | float]:
        return {n: (m.threshold.tolist()) for n, m in zip(self.if_names, self.if_nodes, strict=True)}

    def reset_state(self) -> None:
        for m in self.if_nodes:
            m.reset_state()

    def reset_stats(self) -> None:
        for m in self.if_nodes:
            m.reset_stats()

    def firing_rates(self) -> dict[str, float]:
        return {n: m.firing_rate for n, m in zip(self.if_names, self.if_nodes, strict=True)}

    def _chunk_for(self, B: int, T: int) -> int:
        if self.chunk:
            return max(1, min(self.chunk, T))
        return max(1, min(T, 512 // max(B, 1)))  # ~512 samples per convolution call

    def _encode(self, x: torch.Tensor, steps: int, gen: torch.Generator | None) -> torch.Tensor:
        xs = x.unsqueeze(0).expand(steps, *x.shape)
        if self.encoding == "direct":
            return xs.reshape(steps * x.shape[0], *x.shape[1:])
        p = (xs.abs() / self.input_max).clamp(0, 1)
        u = torch.rand(p.shape, generator=gen, device="cpu").to(x.device)
        spikes = (u < p).to(x.dtype) * torch.sign(xs) * self.input_max
        return spikes.reshape(steps * x.shape[0], *x.shape[1:])

    @torch.no_grad()
    def forward(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.reset_state()
        B = x.shape[0]
        chunk = self._chunk_for(B, timesteps)
        gen = torch.Generator().manual_seed(self.seed) if self.encoding == "poisson" else None
        outs, done = [], 0
        while done < timesteps:
            c = min(chunk, timesteps - done)
            for m in self.if_nodes:
                m.chunk = c
            y = self.graph_module(self._encode(x, c, gen))
            outs.append(y.reshape(c, B, *y.shape[1:]))
            done += c
        return torch.cat(outs).cumsum(0)


# ----------------------------------------------------------------------------- balancing
def _batches(data) -> Iterable[torch.Tensor]:
    """Calibration data: a tensor [N, ...], or an iterable of tensors or (x, y) pairs."""
    if torch.is_tensor(data):
        yield data
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def _set_mode(nodes: Sequence[IFNode], mode: str) -> None:
    for m in nodes:
        m.mode = mode


def _act_stats(snn: ConvertedSNN, data, method: str, percentile: float, per_channel: bool, seed: int):
    nodes = snn.if_nodes
    gen = torch.Generator().manual_seed(seed)
    for m in nodes:
        m.reset_stats()
        m.per_channel = per_channel
        m.stat_collect = "max" if method == "act-max" else "samples"
        m.sample_gen = gen
    _set_mode(nodes, "ann")
    with torch.no_grad():
        dev = next(snn.parameters()).device
        for x in _batches(data):
            snn.graph_module(x.to(dev))
    _set_mode(nodes, "spike")
    out = []
    for m in nodes:
        if method == "act-max":
            th = m.stat_max
        else:
            if per_channel:
                s = torch.cat(m.stat_samples, dim=1).numpy()
                s = np.where(s > 0, s, np.nan)
                th = torch.from_numpy(np.nan_to_num(np.nanpercentile(s, percentile, axis=1), nan=0.0)).float()
            else:
                s = torch.cat(m.stat_samples).numpy()
                th = torch.tensor(float(np.percentile(s, percentile)) if s.size else 0.0)
        m.stat_collect, m.stat_samples = None, []
        out.append(th)
    return out


def _positive(th: torch.Tensor, name: str) -> torch.Tensor:
    """Thresholds must be > 0; a dead channel/layer (never active) gets the layer's max (or 1)."""
    th = th.float().clone()
    if th.ndim == 0:
        return th if th > 0 else torch.tensor(1.0)
    bad = ~(th > 0)
    if bad.all():
        return torch.ones_like(th)
    th[bad] = th[~bad].max()
    return th


def convert(
    ann: nn.Module,
    calibration_data=None,
    *,
    reset: str = "soft",
    balance: str = "auto",
    percentile: float = 99.99,
    scale: float = 1.0,
    per_channel: bool = False,
    encoding: str = "direct",
    v_init: str | float | None = "auto",
    balance_timesteps: int = 64,
    maxpool: str = "avg",
    seed: int = 0,
    chunk: int | None = None,
) -> ConvertedSNN:
    """Convert a trained ReLU (or QCFS) network into an SNN of IF neurons.

    Args:
        ann: the trained network (Conv/Linear/BN/ReLU/AvgPool/Flatten/Dropout/residual additions;
            ReLU as module, ``F.relu`` or ``torch.relu``).  It is not modified.
        calibration_data: a tensor of inputs ``[N, ...]`` or an iterable of batches / (x, y) pairs
            (a few hundred training images); not needed for ``balance="qcfs"``/``"none"``.
        reset: ``"soft"`` (RMP neuron: subtract θ, keep the residual) or ``"hard"`` (to 0).
        balance: see the module docstring; ``percentile`` for ``"percentile"``.
        scale: multiply every threshold by this factor.
        per_channel: one threshold per channel instead of per layer.
        encoding: ``"direct"`` (the analog input every step) or ``"poisson"`` (rate-coded input
            spikes, signed, scaled by the calibration inputs' max |x|; seeded by ``seed``).
        v_init: initial membrane potential: ``None`` (0), ``"half"`` (θ/2), a fraction of θ, or
            ``"auto"`` (``"half"`` for QCFS networks, else 0).
        balance_timesteps: steps simulated per layer for ``"spike-max"``.
        maxpool: ``"avg"`` (replace max pooling by average pooling, with a warning) or ``"error"``.
        chunk: time steps folded into one batch (default: ~512 samples per convolution call).
    """
    if balance not in BALANCE_METHODS:
        raise ValueError(f"unknown balance {balance!r}; valid values: {', '.join(BALANCE_METHODS)}")
    if reset not in ("soft", "hard"):
        raise ValueError(f"unknown reset {reset!r}; valid values: soft, hard")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    is_qcfs = any(isinstance(m, QCFS) for m in ann.modules())
    if balance == "auto":
        balance = "qcfs" if is_qcfs else "spike-max"
    if balance == "qcfs" and not is_qcfs:
        raise ValueError("balance='qcfs' needs an ANN trained with QCFS activations (activation='qcfs')")
    if v_init == "auto":
        v_init = "half" if is_qcfs else None
    graph, if_names = build_snn_graph(ann, reset=reset, maxpool=maxpool)
    input_max = 1.0
    if calibration_data is not None:
        input_max = max(float(x.abs().max()) for x in _batches(calibration_data))
    elif balance in ("spike-max", "act-max", "percentile"):
        raise ValueError(
            f"balance={balance!r} needs calibration_data (a batch or an iterable of training inputs)"
        )
    device = next((p.device for p in ann.parameters()), torch.device("cpu"))
    snn = ConvertedSNN(graph, if_names, encoding=encoding, input_max=input_max, seed=seed, chunk=chunk).to(
        device
    )
    nodes = snn.if_nodes
    for m in nodes:
        m.v_init = v_init
        m.per_channel = per_channel

    if balance == "qcfs":
        for m in nodes:
            lam = m.ann_activation.threshold if isinstance(m.ann_activation, QCFS) else None
            if lam is None:
                raise ConversionError(
                    f"{m.layer_name}: a ReLU in a QCFS network has no trained threshold; "
                    f"use balance='act-max' or train every activation as QCFS"
                )
            m.threshold = lam.detach().abs().reshape(()) * scale
    elif balance in ("act-max", "percentile"):
        for m, th in zip(
            nodes, _act_stats(snn, calibration_data, balance, percentile, per_channel, seed), strict=True
        ):
            m.threshold = _positive(th, m.layer_name).to(device) * scale
    elif balance == "spike-max":
        _spike_max(snn, calibration_data, balance_timesteps, per_channel, scale)
    for m in nodes:
        m.mode = "spike"
        m.reset_stats()
    snn.balance, snn.reset, snn.scale = balance, reset, scale
    return snn


def _spike_max(snn: ConvertedSNN, data, T: int, per_channel: bool, scale: float) -> None:
    nodes = snn.if_nodes
    dev = next(snn.parameters()).device
    batches = [x.to(dev) for x in _batches(data)]
    with torch.no_grad():
        for k, node in enumerate(nodes):
            node.mode, node.stat_max = "record_max", None
            node.per_channel = per_channel
            for x in batches:
                snn.reset_state()
                B = x.shape[0]
                chunk = snn._chunk_for(B, T)
                gen = torch.Generator().manual_seed(snn.seed)
                done = 0
                while done < T:
                    c = min(chunk, T - done)
                    for m in nodes[: k + 1]:
                        m.chunk = c
                    try:
                        snn.graph_module(snn._encode(x, c, gen))
                    except _StopForward:
                        pass
                    done += c
            node.threshold = _positive(node.stat_max, node.layer_name) * scale
            node.mode = "spike"


# ----------------------------------------------------------------------------- evaluation
def _labelled(data) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        yield data[0], data[1]
        return
    yield from data


def evaluate_over_time(
    snn: ConvertedSNN,
    data,
    timesteps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    *,
    device: str | torch.device | None = None,
) -> dict:
    """Accuracy at every horizon in ``timesteps`` from ONE simulation of ``max(timesteps)`` steps.

    ``data``: ``(inputs, labels)`` tensors or an iterable of such batches.  Returns
    ``{"timesteps", "accuracy", "firing_rates" (per layer, spikes/neuron/step over the whole run),
    "images", "seconds", "image_timesteps_per_s"}``.
    """
    steps = sorted({int(t) for t in timesteps})
    if not steps or steps[0] < 1:
        raise ValueError(f"timesteps must be positive integers, got {list(timesteps)}")
    T = steps[-1]
    idx = torch.tensor([t - 1 for t in steps])
    correct = torch.zeros(len(steps))
    n = 0
    snn.reset_stats()
    dev = torch.device(device) if device is not None else next(snn.parameters()).device
    t0 = time.perf_counter()
    for x, y in _labelled(data):
        x, y = x.to(dev), y.to(dev)
        out = snn(x, T)  # [T, B, K] accumulated
        pred = out[idx.to(dev)].argmax(-1)  # [len(steps), B]
        correct += (pred == y.unsqueeze(0)).float().sum(1).cpu()
        n += len(y)
    secs = time.perf_counter() - t0
    return {
        "timesteps": steps,
        "accuracy": (correct / max(n, 1)).tolist(),
        "firing_rates": snn.firing_rates(),
        "images": n,
        "seconds": secs,
        "image_timesteps_per_s": n * T / secs if secs > 0 else math.inf,
    }


@torch.no_grad()
def evaluate_ann(ann: nn.Module, data, device: str | torch.device | None = None) -> dict:
    """Top-1 accuracy and images/s of the ANN on the same data."""
    ann.eval()
    dev = torch.device(device) if device is not None else next(ann.parameters()).device
    correct = n = 0
    t0 = time.perf_counter()
    for x, y in _labelled(data):
        x, y = x.to(dev), y.to(dev)
        correct += int((ann(x).argmax(-1) == y).sum())
        n += len(y)
    secs = time.perf_counter() - t0
    return {"accuracy": correct / max(n, 1), "images": n, "seconds": secs, "images_per_s": n / secs}


def first_within(result: dict, ann_accuracy: float, tolerance: float = 0.01) -> int | None:
    """The first T at which the SNN comes within ``tolerance`` (absolute) of the ANN."""
    for t, a in zip(result["timesteps"], result["accuracy"], strict=True):
        if a >= ann_accuracy - tolerance:
            return t
    return None


__all__ += ["first_within"]
