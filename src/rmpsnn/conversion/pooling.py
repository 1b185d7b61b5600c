"""Spiking max pooling for converted networks: the pooled output follows the maximum of the
window's accumulated inputs.

Rueckauer et al. (Front. Neurosci. 2017, section 2.2.6) gate each max-pooling window so that only
the spikes of its most active input pass, the most active input being the one with the largest
accumulated spike count so far.  A pure gate loses or duplicates spikes whenever the leading input
changes; here the gate's output is instead the *increment* of the window's maximum accumulated
input.  With ``S[t] = Σ_{s<=t} x[s]`` the inputs accumulated over steps 1..t (spikes·θ from the IF
layer before, or any current)::

    M[t] = maxpool(S[t])          y[t] = M[t] - M[t-1]       (M[0] = 0)

so the pooled output accumulated over ``t`` steps is exactly ``maxpool`` of the accumulated
inputs, and the pooled rate ``M[t]/t`` is the maximum of the window's input rates -- which
converge to the ANN activations, so the pooled output converges to the ANN's max pooling.  The
leading input is the one with the most accumulated spikes, as in Rueckauer et al.'s gate.  Each
input's count grows by at most one spike per step, so for the plain IF neurons before it ``y[t]``
is again 0 or one spike (·θ, the same θ for a whole channel); signed neurons can give ``-θ``.

The state (``S`` and ``M`` at the last step) is carried from chunk to chunk like an IF neuron's
membrane potential; :meth:`reset_state` clears it.  The module works on any device and for any
max pooling module (``MaxPool1d/2d/3d``, ``AdaptiveMaxPool1d/2d/3d``) it wraps.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpikingMaxPool"]


class SpikingMaxPool(nn.Module):
    """Max pooling of accumulated inputs, emitting the increment per step (module docstring).

    Input and output: the steps of a chunk folded into the batch, ``[chunk*B, C, ...]``, as for
    :class:`~rmpsnn.conversion.IFNode`; ``chunk`` is set by the simulation.  ``ann_pool`` is the
    ANN's max pooling (used as is by the ANN view of balancing and calibration).
    """

    def __init__(self, ann_pool: nn.Module):
        super().__init__()
        self.ann_pool = ann_pool
        self.chunk = 1
        self.accumulated: torch.Tensor | None = None  # S at the last step, [B, C, ...]
        self.pooled: torch.Tensor | None = None  # M at the last step

    def reset_state(self) -> None:
        self.accumulated = self.pooled = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.unflatten(0, (self.chunk, x.shape[0] // self.chunk))
        acc = steps.cumsum(0)
        if self.accumulated is not None:
            acc = acc + self.accumulated.unsqueeze(0)
        self.accumulated = acc[-1]
        pooled = self.ann_pool(acc.flatten(0, 1)).unflatten(0, (self.chunk, -1))  # M[t]
        increments = pooled.clone()
        increments[1:] -= pooled[:-1]
        if self.pooled is not None:
            increments[0] -= self.pooled
        self.pooled = pooled[-1]
        return increments.flatten(0, 1)

    def extra_repr(self) -> str:
        return "max of accumulated inputs (Rueckauer et al. 2017 gating, exact counts)"
