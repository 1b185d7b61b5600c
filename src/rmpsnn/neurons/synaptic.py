"""Current-based (synaptic) LIF: a neuron with two state variables, written as a spec.

    i[t]     = alpha * i[t-1] + x[t]                 (synaptic current)
    u_pre[t] = tau * u[t-1] + i[t]                   (membrane)
    o[t]     = H(u_pre[t] - v_th);  u[t] = reset(u_pre[t], o[t])

As snnTorch's ``Synaptic`` (alpha, beta = tau) and Norse's ``LIFBoxCell`` with a synaptic
current; NIR's ``CubaLIF`` describes it.  No fused kernel covers it: it runs the reference step
under autograd (:func:`rmpsnn.functional.reference.run_reference`), which is also how its
gradients (input, ``tau``, ``alpha``, ``v_th``) are defined.
"""

from __future__ import annotations

import torch

from .. import surrogate as _surrogate
from ..functional.params import (
    LIF_PARAMS,
    as_param,
    check_input,
    check_number,
    check_reset,
    check_tau,
    check_threshold,
)
from ..functional.reference import Firing, NeuronSpec, run_reference
from .base import Neuron
from .lif import MIN_LEARNED_THRESHOLD
from .registry import register_neuron

__all__ = ["SYNAPTIC_SPEC", "SynapticLIF", "synaptic_step"]


def synaptic_step(x_t, state, p, fire):
    """One step of the current-based LIF (see the module docstring)."""
    i, u = state
    i = p["alpha"] * i + x_t
    v = p["tau"] * u + i
    o, o_r = fire.spike(v, p["v_th"])
    u = v * (1 - o_r) if p["reset"] == "hard" else v - p["v_th"] * o_r
    return o, v, (i, u)


SYNAPTIC_SPEC = NeuronSpec("synaptic", ("alpha", "tau", "v_th", "reset"), ("i", "u"), synaptic_step)


@register_neuron("synaptic", aliases=("cuba-lif", "synaptic-lif"))
class SynapticLIF(Neuron):
    """Current-based LIF neurons (two states: synaptic current ``i`` and potential ``u``).

    ``alpha`` (synaptic decay) and ``tau`` (membrane leak) are in ``[0, 1]``; ``v_th``, ``reset``
    and ``surrogate`` as for :class:`~rmpsnn.neurons.LIF` (same defaults); ``learnable=True``
    makes ``alpha``, ``tau`` and ``v_th`` parameters (kept in range by clamping when used).
    """

    def __init__(
        self,
        tau: float | None = None,
        v_th: float | None = None,
        reset: str | None = None,
        surrogate=None,
        *,
        alpha: float = 0.5,
        learnable: bool = False,
        step_mode: str = "multi",
        carry_state: bool = False,
    ):
        super().__init__(step_mode, carry_state)
        d = LIF_PARAMS
        tau = check_tau(d.tau if tau is None else tau)
        alpha = check_tau(alpha)
        self.reset = d.reset if reset is None else reset
        check_reset(self.reset)
        check_number(d.v_th if v_th is None else v_th, "v_th")
        self.surrogate = _surrogate.get(d.surrogate if surrogate is None else surrogate)
        th = torch.as_tensor(d.v_th if v_th is None else v_th, dtype=torch.get_default_dtype()).clone()
        check_threshold(th)
        values = {"alpha": torch.tensor(float(alpha)), "tau": torch.tensor(float(tau)), "v_th": th}
        for name, value in values.items():
            if learnable:
                setattr(self, name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.learnable = learnable
        self.i: torch.Tensor | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self.i = None

    def firing_threshold(self) -> torch.Tensor:
        return self.v_th.clamp(min=MIN_LEARNED_THRESHOLD) if self.learnable else self.v_th

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "single":
            self._check_single(x)
            x = x.unsqueeze(0)
        else:
            self._check_multi(x)
        check_input(x, type(self).__name__)
        keep = self.step_mode == "single" or self.carry_state
        state = (self.i, self.v) if keep else None
        sample = x.shape[1:]
        p = {
            "alpha": as_param(self.alpha.clamp(0, 1), sample, "alpha", x).bcast,
            "tau": as_param(self.tau.clamp(0, 1), sample, "tau", x).bcast,
            "v_th": as_param(self.firing_threshold(), sample, "v_th", x).bcast,
            "reset": self.reset,
        }
        spikes, upre, (i, u) = run_reference(
            SYNAPTIC_SPEC, x, p, state, Firing(self.surrogate), need_membrane=self.recording
        )
        if keep:
            self.i, self.v = i, u
        if self.recording:
            self._emit(upre)
        return spikes[0] if self.step_mode == "single" else spikes

    def extra_repr(self) -> str:
        return (
            f"alpha={float(self.alpha.detach()):g}, tau={float(self.tau.detach()):g}, "
            f"v_th={float(self.v_th.detach()):g}, "
            f"reset={self.reset!r}, surrogate={self.surrogate.name!r}, learnable={self.learnable}"
        )
