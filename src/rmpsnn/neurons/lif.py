"""LIF and IF neurons (the neurons of RMP-Loss and RMP-SNN), optionally with a learnable threshold.

Thin stateful shells around :func:`rmpsnn.functional.lif_multistep_state`; the parameters are
those of :class:`~rmpsnn.functional.NeuronParams`, whose field defaults are the LIF defaults.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .. import surrogate as _surrogate
from ..functional.neuron import lif_multistep_state
from ..functional.params import (
    IF_PARAMS,
    LIF_PARAMS,
    NeuronParams,
    check_number,
    check_threshold,
    is_tracing,
)
from .base import Neuron
from .registry import register_neuron

__all__ = ["IF", "LIF", "MIN_LEARNED_THRESHOLD", "SpikingNeuron"]

MIN_LEARNED_THRESHOLD = 1e-3  # a learned threshold is clamped here (<= 0 would fire every step)


def _param_field(name: str) -> property:
    """A field of the module's :class:`NeuronParams`, readable and settable as an attribute."""

    def get(self):
        return getattr(self._params, name)

    def set_(self, value):
        self._params = dataclasses.replace(self._params, **{name: value})  # validated again

    return property(get, set_, doc=f"``params.{name}`` (see :class:`~rmpsnn.functional.NeuronParams`).")


class SpikingNeuron(Neuron):
    """Layer of LIF/IF neurons (see :func:`rmpsnn.functional.lif_multistep` for the equations).

    The neuron parameters -- ``tau``, ``v_th``, ``reset``, ``surrogate``, ``v_init``,
    ``detach_reset`` -- are those of :class:`~rmpsnn.functional.NeuronParams` (validated there,
    returned by ``self.params`` and readable and settable as attributes; omitted ones take its
    defaults, the LIF defaults).  The threshold is stored once, as ``v_th``: a buffer (it moves
    with ``.to(device)`` and is saved in the ``state_dict``), or an ``nn.Parameter`` with
    ``learnable_threshold=True`` (trained with the rest; clamped to >= 1e-3 when used).

    Args:
        step_mode: ``"multi"`` (``[T, B, ...]``) or ``"single"`` (``[B, ...]``, stateful).
        carry_state: in multi-step mode, continue from the previous call's final potential.
        backend: ``"auto"``, ``"cpu"`` (fused numba kernel), ``"triton"`` (fused CUDA kernel) or
            ``"torch"``.
        membrane_storage: how ``u_pre`` is kept for backward: ``"auto"``, ``"float32"`` or
            ``"compact"`` (16-bit, see :func:`rmpsnn.functional.lif_multistep_state`).
        learnable_threshold: make ``v_th`` a parameter (a scalar, or the given tensor's shape,
            e.g. one per channel).
    """

    tau = _param_field("tau")
    reset = _param_field("reset")
    surrogate = _param_field("surrogate")
    v_init = _param_field("v_init")
    detach_reset = _param_field("detach_reset")
    defaults = LIF_PARAMS  # what omitted parameters take

    def __init__(
        self,
        tau: float | None = None,
        v_th: float | torch.Tensor | None = None,
        reset: str | None = None,
        surrogate: str | _surrogate.Surrogate | None = None,
        *,
        v_init: float | str | torch.Tensor | None = None,
        detach_reset: bool = False,
        step_mode: str = "multi",
        carry_state: bool = False,
        backend: str = "auto",
        membrane_storage: str = "auto",
        learnable_threshold: bool = False,
    ):
        super().__init__(step_mode, carry_state)
        d = self.defaults
        given = {"tau": tau, "v_th": v_th, "reset": reset, "surrogate": surrogate}
        fields = {k: (getattr(d, k) if v is None else v) for k, v in given.items()}
        check_number(fields["v_th"], "v_th")
        # validated once here; the threshold lives in self.v_th only (params.v_th is not read)
        self._params = NeuronParams(**fields, v_init=v_init, detach_reset=detach_reset)
        self.backend = backend
        self.membrane_storage = membrane_storage
        th = torch.as_tensor(fields["v_th"], dtype=torch.get_default_dtype()).detach().clone()
        check_threshold(th)
        if learnable_threshold:
            self.v_th = nn.Parameter(th)
        else:
            self.register_buffer("v_th", th)

    @property
    def learnable_threshold(self) -> bool:
        return isinstance(self.v_th, nn.Parameter)

    @property
    def params(self) -> NeuronParams:
        """This layer's parameters, with its current threshold and leak (e.g. to run the same
        neuron with :func:`rmpsnn.functional.lif_multistep`)."""
        return dataclasses.replace(self._params, v_th=self.firing_threshold(), tau=self.leak())

    def set_threshold(self, v_th: float | torch.Tensor) -> None:
        """Replace the threshold (e.g. after threshold balancing)."""
        check_number(v_th, "v_th")
        th = torch.as_tensor(v_th, dtype=self.v_th.dtype, device=self.v_th.device).detach().clone()
        check_threshold(th.cpu())  # here, once, wherever the layer lives
        if self.learnable_threshold:
            self.v_th = nn.Parameter(th)
        else:
            self.v_th = th

    def leak(self) -> float | torch.Tensor:
        """The leak factor ``tau`` this layer runs with (a tensor when learned, e.g. PLIF)."""
        return self._params.tau

    def firing_threshold(self) -> float | torch.Tensor:
        if self.learnable_threshold:
            return self.v_th.clamp(min=MIN_LEARNED_THRESHOLD)
        # a Python number on the eager path (cheapest for the kernels); the buffer itself when
        # compiled or exported (float() would break the graph) or off the CPU (it would wait)
        if self.v_th.ndim > 0 or self.v_th.device.type != "cpu" or is_tracing(self.v_th):
            return self.v_th
        return float(self.v_th)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        record = self.recording
        if self.step_mode == "single":
            self._check_single(x)
            x = x.unsqueeze(0)
            v0 = self.v if self.v is not None else self.v_init
        else:
            self._check_multi(x)
            v0 = self.v if (self.carry_state and self.v is not None) else self.v_init
        spikes, upre, vlast = lif_multistep_state(
            x,
            self._params,
            tau=self.leak(),
            v_th=self.firing_threshold(),  # v_th: it follows .to(device) and set_threshold
            v_init=v0,
            need_membrane=record,
            backend=self.backend,
            membrane_storage=self.membrane_storage,
        )
        if self.step_mode == "single" or self.carry_state:
            self.v = vlast
        if record:
            self._emit(upre)
        return spikes[0] if self.step_mode == "single" else spikes

    def extra_repr(self) -> str:
        def show(value) -> str:
            if torch.is_tensor(value):
                value = value.detach()
                return f"{float(value):g}" if value.numel() == 1 else f"tensor{tuple(value.shape)}"
            return f"{float(value):g}"

        th, tau = show(self.v_th), show(self.leak())
        learn = ", learnable_threshold=True" if self.learnable_threshold else ""
        return (
            f"tau={tau}, v_th={th}, reset={self.reset!r}, surrogate={self.surrogate.name!r}, "
            f"step_mode={self.step_mode!r}{learn}"
        )


@register_neuron("lif")
class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neurons with RMP-Loss defaults: ``tau=0.25``, ``v_th=0.5``,
    hard reset, InfLoR surrogate (RMP-Loss eq. 1-3, 5)."""


class IF(SpikingNeuron):
    """Integrate-and-fire neurons (no leak) with soft reset by default: the Residual Membrane
    Potential (RMP) neuron of RMP-SNN, ``u[t] = u_pre[t] - v_th o[t]``."""

    defaults = IF_PARAMS

    def __init__(self, v_th=None, reset=None, surrogate=None, **kwargs):
        super().__init__(1.0, v_th, reset, surrogate, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr().replace("tau=1, ", "")


@register_neuron("if")
def if_neuron(tau=None, **kwargs) -> IF:
    """Integrate-and-fire neurons, soft reset (the RMP neuron); a model's ``tau`` is ignored."""
    return IF(**kwargs)


@register_neuron("lif-learnable-threshold", aliases=("lif_lt",))
def lif_learnable_threshold(**kwargs) -> LIF:
    """LIF neurons whose threshold is learned (one per layer)."""
    return LIF(**kwargs, learnable_threshold=True)


@register_neuron("if-learnable-threshold", aliases=("if_lt",))
def if_learnable_threshold(tau=None, **kwargs) -> IF:
    """IF neurons (soft reset) whose threshold is learned (one per layer); ``tau`` is ignored."""
    return IF(**kwargs, learnable_threshold=True)
