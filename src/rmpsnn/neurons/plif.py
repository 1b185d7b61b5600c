"""PLIF: LIF neurons with a learnable leak (Fang et al., "Incorporating Learnable Membrane Time
Constant to Enhance Learning of Spiking Neural Networks", ICCV 2021).

Parametrisation: the leak factor is ``tau = sigmoid(w)`` with ``w`` an ``nn.Parameter`` (one per
layer, or one per channel with ``channels=C``), so ``tau`` stays in ``(0, 1)`` whatever the
optimiser does; ``w`` starts at ``logit(tau)``.  In SpikingJelly's ``ParametricLIFNode`` notation
(``1/τ = sigmoid(w_sj)``, ``decay_input=False``, ``v_reset=0``) this is ``tau = 1 - sigmoid(w_sj)``:
the same neuron, the leak parametrised directly.  The dynamics are the LIF's, so the fused kernels
run it; their backward reduces ``dL/dtau = Σ_t dL/du_pre[t] u[t-1]`` over time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .lif import LIF
from .registry import register_neuron

__all__ = ["PLIF"]


@register_neuron("plif")
class PLIF(LIF):
    """LIF neurons with a learnable leak ``tau = sigmoid(w)`` (Fang et al., ICCV 2021).

    Args:
        tau: initial leak in ``(0, 1)`` (default: the LIF default 0.25).
        channels: ``None`` for one leak per layer, or ``C`` for one per channel (axis 2 of
            ``[T, B, C, ...]``).
        v_th, reset, surrogate and the keywords of :class:`~rmpsnn.neurons.LIF`.
    """

    def __init__(self, tau: float | None = None, *args, channels: int | None = None, **kwargs):
        super().__init__(None, *args, **kwargs)
        tau0 = self.defaults.tau if tau is None else tau
        if isinstance(tau0, bool) or not isinstance(tau0, (int, float)) or not 0.0 < float(tau0) < 1.0:
            raise InputError(
                f"PLIF: the initial tau must be a number in (0, 1) (tau = sigmoid(w)), got {tau0!r}"
            )
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise InputError(
                f"PLIF: channels must be None (one leak per layer) or a positive int, got {channels!r}"
            )
        w0 = math.log(tau0 / (1.0 - tau0))
        shape = () if channels is None else (channels,)
        self.w = nn.Parameter(torch.full(shape, w0, dtype=torch.get_default_dtype()))

    def leak(self) -> torch.Tensor:
        return torch.sigmoid(self.w)
