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
* ``"mse"`` -- the threshold that minimises the mean squared error between the ANN activations
  ``a`` and their ``T``-step spiking approximation ``θ/T · clip(round(a T / θ), 0, T)`` (``T`` =
  ``calibration_timesteps``): clipping the rare large activations buys resolution for the many
  small ones, which is what matters at few time steps (the threshold choice of Li et al.,
  ICML 2021);
* ``"qcfs"`` -- the trained threshold λ of each QCFS activation (Bu et al., ICLR 2022);
  ``"auto"`` picks it for QCFS networks and ``"mse"`` otherwise.

Then ``calibrate="bias"`` corrects each layer's bias so its mean output rate·θ matches the ANN
activation it replaces, layer by layer (Li et al., ICML 2021; see :mod:`.calibrate`).

``scale`` multiplies every threshold (factors below 1 trade accuracy for latency, as in
RMP-SNN); ``per_channel=True`` balances each channel separately.  ``v_init="half"`` starts every
membrane at θ/2 (the default for QCFS networks and calibrated conversions), which centres the
quantisation error, and ``signed=True`` lets a neuron that over-fired emit negative spikes
(signed IF neurons with memory, Wang et al., IJCAI 2022; the default with soft reset and θ/2),
so that its spike count follows the ANN activation within a few steps.

The defaults -- ``convert(ann, calibration_data)`` -- give the best accuracy at few time steps
rmpsnn offers for a ReLU network (per-channel mse thresholds, θ/2 start, signed neurons, bias
correction; for QCFS networks their trained thresholds, θ/2 and signed neurons, without
calibration).  RMP-SNN exactly as published is
``convert(ann, data, balance="spike-max", calibrate="none")`` (soft reset, membranes from 0).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import fx, nn
from tqdm import tqdm

from ..errors import ConversionError, DataError, InputError
from ..evaluation import check_labels, top1
from ..layers import call_timesteps
from ..models.qcfs import QCFS
from .balancing import BalanceContext, Balancer, capped, get_balancer, positive_threshold
from .calibrate import CALIBRATIONS
from .checks import check_input, expected_input
from .graph import build_snn_graph
from .nodes import IFNode
from .pooling import SpikingMaxPool
from .simulate import simulate

__all__ = [
    "ConvertedSNN",
    "convert",
    "evaluate_ann",
    "evaluate_over_time",
]

ENCODINGS = ("direct", "poisson")


class ConvertedSNN(nn.Module):
    """The converted network: runs ``T`` steps in chunks whose steps are folded into the batch.

    ``forward(x, timesteps)`` takes a static batch ``[B, ...]`` and returns the accumulated
    read-out after every step, ``[T, B, classes]`` (the last layer integrates without spiking),
    so the prediction at every horizon comes from one simulation.  ``timesteps`` may be left out
    once ``self.timesteps`` is set (the one time convention, :func:`~rmpsnn.layers.call_timesteps`).
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
            raise InputError(f"unknown encoding {encoding!r}; valid values: {', '.join(ENCODINGS)}")
        self.graph_module = graph
        self.if_names = list(if_names)
        self.encoding = encoding
        self.input_max = float(input_max)
        self.seed = seed
        self.chunk = chunk
        self.timesteps: int | None = None  # T of a call that gives none
        self.calibration: dict | None = None  # set by convert(calibrate="bias"): per-layer errors
        self.signed = False  # signed IF neurons (set by convert)
        # what forward() accepts: (rank, channels, why) from the first layer, and the weights' dtype
        self.expected_input = expected_input(graph)

    @property
    def input_dtype(self) -> torch.dtype | None:
        """The dtype forward() takes: the weights' (read at each call, so ``.double()`` after
        conversion is followed)."""
        return next((p.dtype for p in self.graph_module.parameters()), None)

    @property
    def if_nodes(self) -> list[IFNode]:
        return [self.graph_module.get_submodule(n) for n in self.if_names]

    def thresholds(self) -> dict[str, list[float] | float]:
        return {n: m.v_th.tolist() for n, m in zip(self.if_names, self.if_nodes, strict=True)}

    def reset_state(self) -> None:
        for m in self.graph_module.modules():
            if isinstance(m, (IFNode, SpikingMaxPool)):
                m.reset_state()

    def reset_stats(self) -> None:
        for m in self.if_nodes:
            m.reset_stats()

    def firing_rates(self) -> dict[str, float]:
        return {n: m.firing_rate for n, m in zip(self.if_names, self.if_nodes, strict=True)}

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The accumulated read-out after every step, ``[T, B, classes]`` (time-major
        :func:`~rmpsnn.conversion.simulate`, chunks of ``self.chunk`` steps if set)."""
        check_input(x, self.expected_input, self.input_dtype, "the input")
        steps = call_timesteps(self.timesteps, timesteps, what="the converted SNN")
        return simulate(self, x, steps, chunk=self.chunk).cumsum(0)

    def outputs(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The read-out in the ANN's units after every step, ``[T, B, ...]``: ``y[t] = (1/t) Σ_{s<=t}
        out[s]``, the mean of the last layer's output over the first ``t`` steps, which converges to
        the ANN's output (logits, or the values of a regression head) as ``t`` grows."""
        total = self(x, timesteps)
        steps = torch.arange(1, total.shape[0] + 1, device=total.device, dtype=total.dtype)
        return total / steps.reshape(-1, *([1] * (total.ndim - 1)))


# ----------------------------------------------------------------------------- balancing
def _batches(data) -> Iterable[torch.Tensor]:
    """Calibration data: a tensor [N, ...], or an iterable of tensors or (x, y) pairs."""
    if torch.is_tensor(data):
        yield data
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def convert(
    ann: nn.Module,
    calibration_data=None,
    *,
    reset: str = "soft",
    balance: str = "auto",
    calibrate: str = "auto",
    percentile: float = 99.99,
    scale: float = 1.0,
    per_channel: bool | None = None,
    encoding: str = "direct",
    v_init: str | float | None = "auto",
    signed: bool | str = "auto",
    balance_timesteps: int = 64,
    calibration_timesteps: int = 16,
    calibration_iterations: int = 3,
    maxpool: str = "spiking",
    seed: int = 0,
    chunk: int | None = None,
    progress: bool | Callable[[str], None] | None = None,
) -> ConvertedSNN:
    """Convert a trained ReLU (or QCFS) network into an SNN of IF neurons.

    Args:
        ann: the trained network (Conv/Linear/BN/ReLU/AvgPool/Flatten/Dropout/residual additions;
            ReLU as module, ``F.relu`` or ``torch.relu``).  It is not modified.
        calibration_data: a tensor of inputs ``[N, ...]`` or an iterable of batches / (x, y) pairs
            (a hundred or so training images); not needed for ``balance="qcfs"``/``"none"``
            without calibration.
        reset: ``"soft"`` (RMP neuron: subtract θ, keep the residual) or ``"hard"`` (to 0).
        balance: see the module docstring; ``percentile`` for ``"percentile"``.
        calibrate: ``"bias"`` (layer-wise bias correction, Li et al. 2021), ``"none"``, another
            registered method (:data:`~rmpsnn.conversion.CALIBRATIONS`), or ``"auto"``: ``"bias"``
            for ``balance="mse"`` (the default) when calibration data is given, ``"none"`` for every
            other balancing method (their thresholds aim at long T, where a correction tuned for
            ``calibration_timesteps`` costs accuracy) and for QCFS networks.
        scale: multiply every threshold by this factor.
        per_channel: one threshold per channel instead of per layer; ``None``: per channel for
            ``"mse"`` (measured better at few steps), per layer for the others, as published.
        encoding: ``"direct"`` (the analog input every step) or ``"poisson"`` (rate-coded input
            spikes, signed, scaled by the calibration inputs' max |x|; seeded by ``seed``).
        v_init: initial membrane potential: ``None`` (0), ``"half"`` (θ/2), a fraction of θ, or
            ``"auto"`` (``"half"`` for QCFS networks and calibrated conversions, else 0).
        signed: signed IF neurons with memory (:func:`~rmpsnn.functional.signed_if_multistep`,
            Wang et al. 2022): a neuron that over-fired takes spikes back, so its count tracks
            the ANN activation at few steps; ``"auto"``: on with soft reset and the θ/2 start
            (the default conversion), off otherwise (RMP-SNN as published keeps plain IF neurons).
        balance_timesteps: steps simulated for ``"spike-max"`` (all layers in one simulation).
        calibration_timesteps: the horizon ``T`` that ``"mse"`` thresholds and the bias
            correction are tuned for (accuracy is best around it and holds for longer ``T``).
        calibration_iterations: bias-correction updates per layer.
        maxpool: ``"spiking"`` (max pooling of the accumulated inputs, which converges to the ANN's
            max pooling: :mod:`.pooling`), ``"avg"`` (replace it by average pooling, with a
            warning) or ``"error"``.
        chunk: time steps folded into one batch (default: on CPU as many as keep a call's largest
            activation near 16 MiB, :data:`~rmpsnn.conversion.simulate.PIECE_BYTES`; 512
            image-steps elsewhere).
        progress: ``None`` (a progress bar on a terminal, silent otherwise), ``True``/``False``,
            or a callable that receives one line per balanced or calibrated layer.
    """
    _check_arguments(
        calibrate, reset, scale, percentile,
        balance_timesteps=balance_timesteps,
        calibration_timesteps=calibration_timesteps,
        calibration_iterations=calibration_iterations,
        v_init=v_init,
    )  # fmt: skip
    balance, per_channel, calibrate, v_init, signed = _resolve_auto(
        ann, calibration_data is not None, reset, balance, per_channel, calibrate, v_init, signed
    )
    balancer = get_balancer(balance)
    device = next((p.device for p in ann.parameters()), torch.device("cpu"))
    batches = _calibration_batches(calibration_data, device)
    # the example resolves negative dims and catches wrong shapes before any work
    graph, if_names = build_snn_graph(
        ann, reset=reset, maxpool=maxpool, example=batches[0] if batches else None
    )
    input_max = 1.0
    if batches:
        dtype = next((p.dtype for p in graph.parameters()), None)
        for x in batches:
            check_input(x, expected_input(graph), dtype, "calibration_data")
        input_max = max(float(x.abs().max()) for x in batches)
    elif balancer.needs_data or calibrate != "none":
        what = f"balance={balance!r}" if calibrate == "none" else f"calibrate={calibrate!r}"
        raise InputError(f"{what} needs calibration_data (a batch or an iterable of training inputs)")
    snn = ConvertedSNN(graph, if_names, encoding=encoding, input_max=input_max, seed=seed, chunk=chunk).to(
        device
    )
    for m in snn.if_nodes:
        m.v_init, m.per_channel, m.signed = v_init, per_channel, signed
    ctx = BalanceContext(
        batches,
        per_channel=per_channel,
        scale=scale,
        percentile=percentile,
        seed=seed,
        balance_timesteps=balance_timesteps,
        calibration_timesteps=calibration_timesteps,
    )
    _balance(snn, balancer, ctx, progress, device)
    if calibrate != "none":
        with _Progress(progress, len(snn.if_nodes), f"{calibrate} calibration") as report:
            snn.calibration = CALIBRATIONS.get(calibrate)(
                snn,
                batches,
                timesteps=calibration_timesteps,
                iterations=calibration_iterations,
                progress=report,
            )
    for m in snn.if_nodes:
        m.reset_stats()
    snn.balance, snn.reset, snn.scale, snn.signed = balance, reset, scale, signed
    return snn


def _calibration_batches(calibration_data, device) -> list[torch.Tensor] | None:
    """The calibration inputs as a list of batches on ``device`` (``None`` when not given)."""
    if calibration_data is None:
        return None
    batches = [x.to(device) if torch.is_tensor(x) else x for x in _batches(calibration_data)]
    if not batches or sum(len(x) for x in batches) == 0:
        raise InputError("calibration_data is empty; give a few hundred training inputs")
    return batches


def _balance(snn: ConvertedSNN, balancer: Balancer, ctx: BalanceContext, progress, device) -> None:
    """Set every IF layer's threshold from ``balancer`` (times ``ctx.scale``, capped where the
    ANN clipped its activation)."""
    balance, nodes = balancer.name, snn.if_nodes
    with _Progress(
        progress, len(nodes) if balancer.per_layer_progress else None, f"{balance} balancing"
    ) as report:
        thresholds = balancer.fn(snn, dataclasses.replace(ctx, progress=report))
    if len(thresholds) != len(nodes):
        raise ConversionError(
            f"balance={balance!r} returned {len(thresholds)} thresholds for {len(nodes)} IF layers"
        )
    for m, th in zip(nodes, thresholds, strict=True):
        th = positive_threshold(torch.as_tensor(th), m.layer_name).to(device)
        m.set_threshold(capped(th * ctx.scale, m))


def _check_arguments(calibrate, reset, scale, percentile, *, v_init, **step_counts) -> None:
    """Refuse unknown names and out-of-range numbers before any work (one line each; an unknown
    balancer when :func:`convert` looks it up, right after resolving ``"auto"``)."""
    if calibrate != "auto" and calibrate not in CALIBRATIONS:
        raise InputError(
            f"unknown calibrate {calibrate!r}; valid values: auto, {', '.join(CALIBRATIONS.names())}"
        )
    if reset not in ("soft", "hard"):
        raise InputError(f"unknown reset {reset!r}; valid values: soft, hard")
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a finite number > 0, got {scale}")
    if not 0 < percentile <= 100:
        raise InputError(f"percentile must be in (0, 100], got {percentile}")
    if percentile < 50:  # a fraction where a percentage was meant: thresholds near 0, no error
        raise InputError(
            f"percentile is in percent: {percentile} would set every threshold below the median "
            f"activation; for the 99.9th percentile give percentile=99.9"
        )
    for name, value in step_counts.items():
        if not (isinstance(value, int) and value >= 1):
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    _check_v_init(v_init)


def _resolve_auto(ann, has_data: bool, reset, balance, per_channel, calibrate, v_init, signed):
    """What every ``"auto"`` (and ``per_channel=None``) of :func:`convert` resolves to, checked
    against the others: ``(balance, per_channel, calibrate, v_init, signed)``."""
    is_qcfs = any(isinstance(m, QCFS) for m in ann.modules())
    if balance == "auto":
        balance = "qcfs" if is_qcfs else "mse"
    if balance == "qcfs" and not is_qcfs:
        raise InputError("balance='qcfs' needs an ANN trained with QCFS activations (activation='qcfs')")
    if per_channel is None:
        per_channel = balance == "mse"
    if calibrate == "auto":
        # bias calibration (with θ/2 and signed neurons) only where the thresholds are tuned for the
        # same short horizon (mse): there it is the few-step design.  Spike-max, act-max and
        # percentile thresholds aim at long T, where a correction tuned for calibration_timesteps
        # over-corrects (issue 25: spike-max 54.8 % calibrated vs 59.5 % plain at T = 256), and
        # QCFS networks are exact without it.
        calibrate = "bias" if has_data and balance == "mse" else "none"
    if v_init == "auto":
        v_init = "half" if (is_qcfs or calibrate != "none") else None
    if signed == "auto":
        signed = reset == "soft" and v_init == "half"
    if not isinstance(signed, bool):
        raise InputError(f"signed must be True, False or 'auto', got {signed!r}")
    if signed and reset != "soft":
        raise InputError("signed neurons take spikes back by adding θ: they need reset='soft'")
    return balance, per_channel, calibrate, v_init, signed


def _check_v_init(v_init) -> None:
    if v_init in (None, "auto", "half"):
        return
    if isinstance(v_init, bool) or not isinstance(v_init, (int, float)):
        raise InputError(f"v_init must be None, 'half', 'auto' or a fraction of θ, got {v_init!r}")
    if not math.isfinite(v_init):
        raise InputError(f"v_init must be a finite fraction of θ (e.g. 0.5), got {v_init}")


class _Progress:
    """Progress of a loop: a tqdm bar (by default only on a terminal), or lines to a callable."""

    def __init__(self, progress, total: int | None, desc: str, unit: str = "layer"):
        self.callable = progress if callable(progress) else None
        self.desc = desc
        self.bar = None
        if self.callable is None:
            disable = None if progress is None else not progress  # None: only on a terminal
            self.bar = tqdm(
                total=total, desc=desc, unit=unit, leave=False, disable=disable, dynamic_ncols=True
            )

    def __enter__(self) -> _Progress:
        return self

    def __call__(self, line: str | None, advance: int = 1) -> None:
        if self.callable is not None and line is not None:
            self.callable(f"{self.desc}: {line}")
        elif self.bar is not None:
            self.bar.update(advance)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- evaluation
def _is_pair(data) -> bool:
    """``data`` is one ``(inputs, labels)`` pair of tensors, not an iterable of batches."""
    return isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0])


def _labelled(data) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if _is_pair(data):
        yield data[0], data[1]
        return
    yield from data


def evaluate_over_time(
    snn: ConvertedSNN,
    data,
    timesteps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    *,
    device: str | torch.device | None = None,
    progress: bool | Callable[[str], None] | None = None,
    total_images: int | None = None,
    warn_after_s: float | None = 120.0,
) -> dict:
    """Accuracy at every horizon in ``timesteps`` from ONE simulation of ``max(timesteps)`` steps.

    ``data``: ``(inputs, labels)`` tensors or an iterable of such batches.  ``progress``: as in
    :func:`convert` (lines go out about every tenth of the data); ``total_images`` tells it (and
    the time estimate) how many images an iterable holds.  After the first batch, a warning with
    the estimated duration is issued when it exceeds ``warn_after_s`` seconds.  Returns
    ``{"timesteps", "accuracy", "firing_rates" (per layer, spikes/neuron/step over the whole run),
    "images", "seconds", "image_timesteps_per_s"}``.
    """
    steps = sorted({int(t) for t in timesteps})
    if not steps or steps[0] < 1:
        raise InputError(f"timesteps must be positive integers, got {list(timesteps)}")
    T = steps[-1]
    if _is_pair(data):
        total_images = len(data[0])
    idx = torch.tensor([t - 1 for t in steps])
    correct = torch.zeros(len(steps))
    n = 0
    snn.reset_stats()
    dev = torch.device(device) if device is not None else next(snn.parameters()).device
    t0 = time.perf_counter()
    next_line = 0.0
    with _Progress(progress, total_images, f"simulating T={T}", unit="img") as report:
        for x, y in _labelled(data):
            x, y = x.to(dev), y.to(dev)
            out = snn(x, T)  # [T, B, K] accumulated
            check_labels(y, out.shape[-1])
            pred = out[idx.to(dev)].argmax(-1)  # [len(steps), B]
            correct += (pred == y.unsqueeze(0)).float().sum(1).cpu()
            first = n == 0
            n += len(y)
            secs = time.perf_counter() - t0
            left = secs / n * (total_images - n) if total_images else None
            if first and left is not None and warn_after_s is not None and secs + left > warn_after_s:
                warnings.warn(
                    f"simulating {total_images} images for T={T} steps will take about "
                    f"{(secs + left) / 60:.1f} min on this machine ({n * T / secs:.0f} image-steps/s); "
                    f"evaluate fewer images or a smaller largest T to shorten it",
                    stacklevel=2,
                )
            line = None
            if total_images and n / total_images >= next_line:
                next_line += 0.1
                line = f"{n}/{total_images} images, {secs:.0f} s" + (f", ~{left:.0f} s left" if left else "")
            elif not total_images:
                line = f"{n} images, {secs:.0f} s"
            report(line, len(y))
    if n == 0:  # an accuracy of 0.0 over nothing would be a silent wrong number
        raise DataError("evaluate_over_time: the data holds no images; give at least one labelled batch")
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
    r = top1(ann, _labelled(data), device=device)
    return {k: r[k] for k in ("accuracy", "images", "seconds", "images_per_s")}


def first_within(result: dict, ann_accuracy: float, tolerance: float = 0.01) -> int | None:
    """The first simulated T from which every longer simulated T stays within ``tolerance``
    (absolute) of the ANN's accuracy: "within 1 % from T = N on".  None if the last simulated T
    is outside the band (a T that only touches the band and leaves it again does not count)."""
    first = None
    for t, a in zip(result["timesteps"], result["accuracy"], strict=True):
        if a >= ann_accuracy - tolerance:
            first = t if first is None else first
        else:
            first = None
    return first


__all__ += ["first_within"]
