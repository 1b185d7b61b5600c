"""Post-conversion calibration: bias correction and initial potentials (Li et al., ICML 2021).

A converted layer's firing rate times its threshold approximates the ANN activation it
replaces, but not exactly: clipping at θ, the residual potential left at the end of ``T`` steps,
and the errors arriving from the layers before add up to a systematic per-channel offset, the
main reason a converted network is poor at few time steps.  Li, Deng, Dong, Gong & Gu, "A Free
Lunch From ANN: Towards Efficient, Accurate Spiking Neural Networks Calibration" (ICML 2021)
remove it layer by layer on a few hundred unlabelled images (their "bias correction", eq. 12):

    e_c = E[a_c] - E[r_c · θ]            per channel c of layer l, over images, positions, steps
    b_c <- b_c + e_c                       the bias of the layer feeding the IF neurons

where ``a`` is the ANN activation and ``r`` the SNN firing rate over the calibration horizon
``T``, with layers ``1 .. l-1`` already corrected (so each layer also absorbs the error it
inherits).  The spiking response is not exactly linear in the bias (silent and saturated neurons
do not move, and a hard reset loses part of every increment), so the update is repeated
``iterations`` times on that layer, each step divided by the response per unit of bias measured
in the step before (a per-channel secant step); each channel keeps the correction that left the
smallest error, so calibration never makes a layer's mean worse on the calibration data.  Together with
``v_init = θ/2`` (which turns the IF neuron's rounding down into rounding to nearest; Li et al.'s
potential initialisation, also Bu et al. ICLR 2022) this is their light pipeline.

The correction is folded into the Conv/Linear layer in front of the IF node (through a residual
addition when the branch is used only there), so the calibrated SNN has the same structure as
before and exports as usual; otherwise it is kept in the node's ``bias`` buffer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import fx, nn

from ..errors import InputError
from ..registry import Registry
from .nodes import IFNode
from .observers import ActivationObserver, ChannelMean, ann_view
from .simulate import simulate, simulate_layer

__all__ = ["CALIBRATIONS", "ann_activation_means", "available_calibrations", "calibrate"]

# name -> fn(snn, batches, *, timesteps, iterations, progress) -> report dict (or None); the
# the command line offers every registered name (and auto)
CALIBRATIONS: Registry[Callable] = Registry("calibration method")


def available_calibrations() -> list[str]:
    """Registered calibration methods (the built-ins and any registered since)."""
    return CALIBRATIONS.names()


_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def ann_activation_means(snn, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per IF layer, the per-channel mean of the ANN activation it replaces, over ``batches``."""
    with ann_view(snn, lambda node: ActivationObserver(node.ann_activation, "mean")) as observers:
        for x in batches:
            snn.graph_module(x)
    return [obs.mean.value() for obs in observers]


def _fold_target(gm: fx.GraphModule, if_node_name: str) -> nn.Module | None:
    """The Conv/Linear whose bias can carry a correction of the IF node's input current: the
    node's input itself, or a branch of a residual sum, each used only there."""
    graph_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == if_node_name)
    src = graph_node.args[0]
    candidates = [src]
    if src.op == "call_function" and src.target in (operator.add, operator.iadd, torch.add):
        candidates = [a for a in src.args if isinstance(a, fx.Node)]
    if len(src.users) != 1:
        return None
    for c in candidates:
        if c.op == "call_module" and len(c.users) == 1:
            m = gm.get_submodule(c.target)
            if isinstance(m, _FOLDABLE):
                return m
    return None


def _add_bias(gm: fx.GraphModule, node: IFNode, name: str, delta: torch.Tensor) -> None:
    target = _fold_target(gm, name)
    if target is not None and (
        (isinstance(target, nn.Linear) and target.out_features == delta.numel())
        or (not isinstance(target, nn.Linear) and target.out_channels == delta.numel())
    ):
        if target.bias is None:
            target.bias = nn.Parameter(torch.zeros_like(delta))
        target.bias.data += delta.to(target.bias.dtype)
        return
    node.bias = delta.clone() if node.bias is None else node.bias + delta


@CALIBRATIONS.register("bias")
@torch.no_grad()
def calibrate(
    snn,
    batches: Sequence[torch.Tensor],
    *,
    timesteps: int = 16,
    iterations: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Bias-correct every IF layer of ``snn`` in order (see the module docstring).

    ``batches``: calibration inputs ``[B, ...]`` (on the network's device).  ``timesteps``: the
    horizon the firing rates are measured over; ``progress`` gets a line per layer.  Returns
    ``{"timesteps", "iterations", "layers": [{"name", "error_before", "error_after"}, ...]}``
    with the mean over channels of ``|E[a] - E[r·θ]|`` before and after the correction.
    """
    if timesteps < 1:
        raise InputError(f"calibration timesteps must be >= 1, got {timesteps}")
    if iterations < 1:
        raise InputError(f"calibration iterations must be >= 1, got {iterations}")
    targets = ann_activation_means(snn, batches)
    gm = snn.graph_module
    report: list[dict] = []

    def step(k: int, node: IFNode, inputs: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        target = targets[k].to(inputs[0].device)
        total = torch.zeros_like(target)  # correction applied so far, per channel
        best, best_abs = total, None
        slope = torch.ones_like(target)
        last_err = last_delta = None
        for i in range(iterations + 1):
            err = target - _mean_over(simulate_layer(node, inputs, timesteps, shift=total))
            if best_abs is None:
                before, best_abs = float(err.abs().mean()), err.abs()
            else:  # channels are independent: keep each one's best correction so far
                better = err.abs() < best_abs
                best, best_abs = torch.where(better, total, best), torch.where(better, err.abs(), best_abs)
            if i == iterations:
                break
            if last_delta is not None:  # secant: how far the mean moved per unit of bias
                ok = last_delta.abs() > 1e-6
                moved = (last_err - err) / torch.where(ok, last_delta, 1.0)
                slope = torch.where(ok, moved.clamp(0.1, 1.5), slope)
            last_err, last_delta = err, err / slope
            total = total + last_delta
        _add_bias(gm, node, snn.if_names[k], best)

        def corrected():  # the layer's final output, streamed; its error is recorded on the way
            mean = ChannelMean()
            for o in simulate_layer(node, inputs, timesteps, shift=best):
                mean.add(o)
                yield o
            after = float((target - mean.value()).abs().mean())
            report.append({"name": node.layer_name, "error_before": before, "error_after": after})

        return corrected()

    simulate(snn, batches, timesteps, step, progress=progress)
    return {"timesteps": timesteps, "iterations": iterations, "layers": report}


def _mean_over(outs: Iterable[torch.Tensor]) -> torch.Tensor:
    mean = ChannelMean()
    for o in outs:
        mean.add(o)
    return mean.value()


@CALIBRATIONS.register("none")
def no_calibration(snn, batches, **_) -> None:
    """No post-conversion calibration (thresholds only)."""
    return None
