"""Observers: what balancing and calibration measure in a converted network, gathered without
modes inside the spiking layers.

:func:`ann_view` temporarily puts back, in place of every IF layer of a
:class:`~rmpsnn.conversion.ConvertedSNN`, the ANN activation that layer replaced, wrapped by an
observer; ``snn.graph_module(x)`` then computes the ANN (same folded weights, same graph), and
the observers see every layer's activation in one pass.  Spiking max pooling is likewise replaced
by the ANN's max pooling.  The IF layers themselves are the
ordinary IF neuron and stay untouched; the graph gets them back when the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .nodes import IFNode
from .pooling import SpikingMaxPool

__all__ = ["ActivationObserver", "ChannelMean", "ann_view", "channel_max", "channel_mean"]

COLLECT = ("max", "samples", "mean")


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the channel axis 1 (a scalar's worth for 1-D data)."""
    if x.ndim < 2:
        return x.float().mean().reshape(1)
    dims = [d for d in range(x.ndim) if d != 1]
    return x.float().mean(dim=dims)


def channel_max(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The maximum of ``x`` (detached), per channel (axis 1) if ``per_channel``."""
    x = x.detach()
    return x.amax(dim=[d for d in range(x.ndim) if d != 1]) if per_channel else x.max()


class ChannelMean:
    """Per-channel mean over batches seen one at a time."""

    def __init__(self):
        self.total, self.n = None, 0

    def add(self, x: torch.Tensor) -> None:
        s = channel_mean(x) * x.shape[0]
        self.total, self.n = (s if self.total is None else self.total + s), self.n + x.shape[0]

    def value(self) -> torch.Tensor:
        return self.total / self.n


class ActivationObserver(nn.Module):
    """The ANN activation of one converted layer, recording what balancing or calibration needs:

    * ``"max"``: the running maximum of its input (per channel if ``per_channel``);
    * ``"samples"``: a random subset (at most ``sample_cap`` per batch, drawn with ``generator``)
      of its input -- the positive values for one threshold per layer, any values ``[C, N]`` per
      channel;
    * ``"mean"``: the per-channel mean of its output (the activation the IF layer replaces).
    """

    def __init__(
        self,
        activation: nn.Module,
        collect: str,
        *,
        per_channel: bool = False,
        generator: torch.Generator | None = None,
        sample_cap: int = 200_000,
    ):
        super().__init__()
        if collect not in COLLECT:
            raise ValueError(f"unknown statistic {collect!r}; valid values: {', '.join(COLLECT)}")
        self.activation = activation
        self.collect = collect
        self.per_channel = per_channel
        self.generator = generator
        self.sample_cap = sample_cap
        self.max: torch.Tensor | None = None
        self.samples: list[torch.Tensor] = []
        self.mean = ChannelMean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xd = x.detach()
        if self.collect == "max":
            m = channel_max(xd, self.per_channel)
            self.max = m if self.max is None else torch.maximum(self.max, m)
        elif self.collect == "samples":
            if self.per_channel:
                xd = xd.transpose(0, 1).reshape(xd.shape[1], -1)  # [C, N]
                k = min(xd.shape[1], self.sample_cap)
                idx = torch.randperm(xd.shape[1], generator=self.generator)[:k]
                self.samples.append(xd[:, idx])
            else:
                pos = xd[xd > 0].reshape(-1)
                k = min(pos.numel(), self.sample_cap)
                idx = torch.randperm(pos.numel(), generator=self.generator)[:k]
                self.samples.append(pos[idx])
        out = self.activation(x)
        if self.collect == "mean":
            self.mean.add(out.detach())
        return out


def _swap(gm: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


@contextmanager
def ann_view(snn, make_observer: Callable[[IFNode], nn.Module] | None = None) -> Iterator[list[nn.Module]]:
    """Within the block, ``snn.graph_module`` computes the ANN: each IF layer is replaced by
    ``make_observer(node)`` (e.g. an :class:`ActivationObserver` of ``node.ann_activation``; by
    default the bare activation).  Yields the observers in layer order; the IF layers are put
    back on exit, even on error."""
    gm = snn.graph_module
    nodes = snn.if_nodes
    pools = [(name, m) for name, m in gm.named_modules() if isinstance(m, SpikingMaxPool)]
    observers = [make_observer(n) if make_observer is not None else n.ann_activation for n in nodes]
    try:
        for name, obs in zip(snn.if_names, observers, strict=True):
            _swap(gm, name, obs)
        for name, pool in pools:  # spiking max pooling computes the ANN's max pooling
            _swap(gm, name, pool.ann_pool)
        yield observers
    finally:
        for name, node in zip(snn.if_names, nodes, strict=True):
            _swap(gm, name, node)
        for name, pool in pools:
            _swap(gm, name, pool)
