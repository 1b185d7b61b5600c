"""Threshold balancing: how each converted layer gets its threshold θ -- pluggable.

A balancing method is a function ``fn(snn, ctx) -> thresholds`` registered under a name with
:func:`register_balancer`; it gets the converted network (its IF layers in ``snn.if_nodes``) and a
:class:`BalanceContext` (calibration batches, per-channel or not, horizons, a progress callback)
and returns one threshold per IF layer, a scalar or one value per channel, before ``scale``.
:func:`rmpsnn.conversion.convert` then makes them positive, scales and sets them.  A method that
needs the spiking layers while it runs (spike-max) may set thresholds itself on the way.

    from rmpsnn.conversion import convert, register_balancer
    from rmpsnn.conversion.observers import ActivationObserver, ann_view

    @register_balancer("act-mean")                  # e.g. twice the mean positive activation
    def act_mean(snn, ctx):
        def observe(node):
            return ActivationObserver(node.ann_activation, "mean")
        with ann_view(snn, observe) as observers:
            for x in ctx.batches:
                snn.graph_module(x)
        return [2 * obs.mean.value().mean() for obs in observers]

    snn = convert(ann, images, balance="act-mean")

Statistics of the ANN come from observers (:mod:`.observers`), spiking ones from the layer-major
simulation (:func:`.simulate.simulate` with a ``layer_step``).  The built-in methods and their
references are listed in :mod:`rmpsnn.conversion.convert`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConversionError, InputError
from ..models.qcfs import QCFS
from ..registry import Registry
from .nodes import IFNode
from .observers import ActivationObserver, ann_view, channel_max
from .simulate import simulate, simulate_layer

if TYPE_CHECKING:
    from .convert import ConvertedSNN

__all__ = [
    "BALANCERS",
    "BalanceContext",
    "Balancer",
    "available_balancers",
    "capped",
    "get_balancer",
    "register_balancer",
]


@dataclasses.dataclass(frozen=True)
class BalanceContext:
    """What a balancing method may use besides the network.

    ``batches``: calibration inputs on the network's device (``None`` when none were given);
    ``per_channel``: one threshold per channel; ``scale``: the factor ``convert`` applies to the
    returned thresholds; ``percentile``; ``seed`` for sampling; ``balance_timesteps`` (spiking
    simulations) and ``calibration_timesteps`` (the horizon thresholds are tuned for);
    ``progress``: call it with one line per finished layer (or ignore it).
    """

    batches: list[torch.Tensor] | None
    per_channel: bool = False
    scale: float = 1.0
    percentile: float = 99.99
    seed: int = 0
    balance_timesteps: int = 64
    calibration_timesteps: int = 16
    progress: Callable[[str], None] | None = None


BalanceFn = Callable[["ConvertedSNN", BalanceContext], Sequence[torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class Balancer:
    name: str
    fn: BalanceFn
    needs_data: bool  # calibration data is required
    per_layer_progress: bool  # fn reports one line per layer through ctx.progress


# name -> fn(snn, ctx) -> thresholds; meta: needs_data, per_layer_progress
BALANCERS: Registry[BalanceFn] = Registry("balancing method")


def register_balancer(
    name: str, *, needs_data: bool = True, per_layer_progress: bool = False, replace: bool = False
):
    """Decorator: make ``fn(snn, ctx) -> thresholds`` available as ``convert(..., balance=name)``
    (in :data:`BALANCERS`; a name already taken by another function raises unless ``replace``)."""
    if not isinstance(name, str) or not name or name == "auto":
        raise InputError(f"a balancing method cannot be called {name!r}")

    def deco(fn: BalanceFn) -> BalanceFn:
        BALANCERS.register(
            name, fn, replace=replace, needs_data=needs_data, per_layer_progress=per_layer_progress
        )
        return fn

    return deco


def available_balancers() -> list[str]:
    """Registered balancing methods (the built-ins and any registered since)."""
    return BALANCERS.names()


def get_balancer(name: str) -> Balancer:
    """The balancing method registered as ``name``; unknown names raise an :class:`InputError`."""
    if name not in BALANCERS:
        msg = BALANCERS.unknown_message(name)
        hint = msg[msg.index("did you mean") :].split("?")[0] + "? " if "did you mean" in msg else ""
        raise InputError(
            f"unknown balance {name!r}; {hint}valid values: auto, {', '.join(BALANCERS.names())}"
        )
    e = BALANCERS.entry(name)
    return Balancer(e.name, e.obj, e.meta["needs_data"], e.meta["per_layer_progress"])


# ----------------------------------------------------------------------------- built-in methods
@register_balancer("none", needs_data=False)
def _unit(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """θ = 1 everywhere (e.g. weights already normalised)."""
    return [torch.tensor(1.0) for _ in snn.if_nodes]


@register_balancer("qcfs", needs_data=False)
def _qcfs(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """The trained threshold λ of each QCFS activation (Bu et al., ICLR 2022)."""
    out = []
    for m in snn.if_nodes:
        if not isinstance(m.ann_activation, QCFS):
            raise ConversionError(
                f"{m.layer_name}: a ReLU in a QCFS network has no trained threshold; "
                f"use balance='act-max' or train every activation as QCFS"
            )
        out.append(m.ann_activation.threshold.detach().abs().reshape(()))
    return out


@register_balancer("act-max")
def _act_max(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """The largest ANN activation (Diehl et al., IJCNN 2015)."""
    return _act_stats(snn, ctx, "act-max")


@register_balancer("percentile")
def _percentile(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """A high percentile of the positive ANN activations (Rueckauer et al. 2017)."""
    return _act_stats(snn, ctx, "percentile")


@register_balancer("mse")
def _mse(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """The θ that minimises the T-step quantisation error of the ANN activations (Li et al. 2021)."""
    return _act_stats(snn, ctx, "mse")


@register_balancer("spike-max", per_layer_progress=True)
def _spike_max(snn: ConvertedSNN, ctx: BalanceContext) -> list[torch.Tensor]:
    """Spike-max balancing (Sengupta et al. 2019; RMP-SNN): each layer's threshold is the largest
    input current it receives in a ``T``-step simulation in which every layer before it already
    spikes with its balanced threshold.  Layer-major, so all layers cost one simulation."""
    found: list[torch.Tensor] = []

    def step(k: int, node: IFNode, inputs: list[torch.Tensor]):
        m = None
        for x in inputs:
            cm = channel_max(x, node.per_channel)
            m = cm if m is None else torch.maximum(m, cm)
        found.append(m)
        node.set_threshold(
            capped(positive_threshold(m, node.layer_name) * ctx.scale, node)
        )  # the next layers see it
        return simulate_layer(node, inputs, ctx.balance_timesteps)  # a stream: spikes are kept compactly

    simulate(snn, ctx.batches, ctx.balance_timesteps, step, progress=ctx.progress)
    return found


def _act_stats(snn: ConvertedSNN, ctx: BalanceContext, method: str) -> list[torch.Tensor]:
    """Thresholds from the ANN activations (one pass over the data with an observer per layer)."""
    per_channel, percentile = ctx.per_channel, ctx.percentile
    gen = torch.Generator().manual_seed(ctx.seed)
    collect = "max" if method == "act-max" else "samples"

    def observer(node: IFNode) -> ActivationObserver:
        return ActivationObserver(node.ann_activation, collect, per_channel=per_channel, generator=gen)

    with ann_view(snn, observer) as observers, torch.no_grad():
        dev = next(snn.parameters()).device
        for x in ctx.batches:
            snn.graph_module(x.to(dev))
    out = []
    for obs in observers:
        if method == "act-max":
            th = obs.max
        elif method == "mse":
            th = _mse_threshold(obs.samples, per_channel, ctx.calibration_timesteps)
        else:
            if per_channel:
                s = torch.cat(obs.samples, dim=1).numpy()
                s = np.where(s > 0, s, np.nan)
                th = torch.from_numpy(np.nan_to_num(np.nanpercentile(s, percentile, axis=1), nan=0.0)).float()
            else:
                s = torch.cat(obs.samples).numpy()
                th = torch.tensor(float(np.percentile(s, percentile)) if s.size else 0.0)
        out.append(th)
    return out


def _quantisation_mse(a: np.ndarray, thetas: np.ndarray, T: int) -> np.ndarray:
    """E[(a - θ/T clip(round(a T/θ), 0, T))^2] for every candidate θ (``a``: positive samples,
    sorted ascending).

    Exactly, without quantising every sample for every θ: ``a`` rounds to level ``k`` (value
    ``k θ/T``) on ``[(k - 1/2) θ/T, (k + 1/2) θ/T)`` (to ``T`` above), so with prefix sums of
    ``a`` and ``a²`` each level adds ``Σa² - 2 q_k Σa + n_k q_k²`` over its slice of the sorted
    samples -- ``T + 1`` binary searches per θ instead of a pass over all samples."""
    s1 = np.concatenate([[0.0], np.cumsum(a)])
    s2 = np.concatenate([[0.0], np.cumsum(a * a)])
    step = thetas[:, None] / T  # [K, 1]
    edges = np.searchsorted(a, (np.arange(T) + 0.5)[None, :] * step)  # [K, T]: level k starts here
    k = len(thetas)
    bounds = np.concatenate([np.zeros((k, 1), np.int64), edges, np.full((k, 1), a.size)], axis=1)
    lo, hi = bounds[:, :-1], bounds[:, 1:]  # level k holds a[lo[:, k]:hi[:, k]]
    q = np.arange(T + 1)[None, :] * step
    sq = (s2[hi] - s2[lo]) - 2 * q * (s1[hi] - s1[lo]) + (hi - lo) * q * q
    return sq.sum(axis=1) / a.size


def _mse_one(a: np.ndarray, T: int, candidates: int = 100) -> float:
    a = a[np.isfinite(a) & (a > 0)].astype(np.float64)
    if a.size == 0:
        return 0.0
    if a.size > 50_000:  # the error curve is smooth: a subsample finds the same minimum
        a = a[np.random.default_rng(0).choice(a.size, 50_000, replace=False)]
    a = np.sort(a)
    thetas = a[-1] * np.linspace(1.0 / candidates, 1.0, candidates)
    return float(thetas[np.argmin(_quantisation_mse(a, thetas, T))])


def _mse_threshold(samples: list[torch.Tensor], per_channel: bool, T: int) -> torch.Tensor:
    if not samples:
        return torch.tensor(0.0)
    if per_channel:
        s = torch.cat(samples, dim=1).double().numpy()  # [C, N]
        return torch.tensor([_mse_one(row, T) for row in s], dtype=torch.float32)
    return torch.tensor(_mse_one(torch.cat(samples).double().numpy(), T))


def capped(th: torch.Tensor, node: IFNode) -> torch.Tensor:
    """``th`` capped at the clip value ``c`` of a clipped ReLU (ReLU6, Hardtanh(0, c), clamp(0, c)):
    its IF neurons then saturate where the ANN activation does (rate·θ <= θ <= c)."""
    cap = node.cap
    return th if cap is None else th.clamp(max=cap)


def positive_threshold(th: torch.Tensor, name: str) -> torch.Tensor:
    """Thresholds must be > 0; a dead channel/layer (never active) gets the layer's max (or 1)."""
    th = th.float().clone()
    if th.ndim == 0:
        return th if th > 0 else torch.tensor(1.0)
    bad = ~(th > 0)
    if bad.all():
        return torch.ones_like(th)
    th[bad] = th[~bad].max()
    return th
