"""Spiking-neuron modules: thin stateful shells around :mod:`rmpsnn.functional`.

* :class:`LIF` -- leaky integrate-and-fire, RMP-Loss defaults (tau 0.25, v_th 0.5, hard reset,
  InfLoR surrogate);
* :class:`IF` -- integrate-and-fire (tau 1) with the soft reset of the RMP neuron (RMP-SNN);
* :class:`OutputIntegrator` -- the non-spiking read-out of RMP-Loss eq. 4;
* :class:`MembraneRecorder` -- collects the pre-spike potentials of a model's neurons during a
  forward pass, for RMP-Loss and for plots.

Two step modes, same maths:

* ``step_mode="multi"`` (default): input ``[T, B, ...]``, all time steps in one call.  Each
  call starts from ``v_init`` unless ``carry_state=True`` (then the potential after the last
  step is kept for the next call, e.g. to simulate a long run in chunks).
* ``step_mode="single"``: input ``[B, ...]``, one time step per call, the potential is kept
  between calls (streaming input).  Call :meth:`reset_state` (or
  :func:`reset_states` on a whole model) before a new sequence.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from . import surrogate as _surrogate
from .errors import InputError
from .functional.neuron import (
    RESETS,
    NeuronParams,
    check_threshold,
    is_tracing,
    lif_multistep_state,
)

__all__ = ["IF", "LIF", "MembraneRecorder", "OutputIntegrator", "SpikingNeuron", "reset_states"]

STEP_MODES = ("multi", "single")


def _check_step_mode(mode: str) -> None:
    if mode not in STEP_MODES:
        raise InputError(f"unknown step_mode {mode!r}; valid values: {', '.join(STEP_MODES)}")


class _Stateful(nn.Module):
    """Shared state handling for modules that integrate over time."""

    def __init__(self, step_mode: str, carry_state: bool):
        super().__init__()
        _check_step_mode(step_mode)
        self.step_mode = step_mode
        self.carry_state = carry_state
        self.v: torch.Tensor | None = None  # potential after the last processed step

    def reset_state(self) -> None:
        """Forget the membrane potential (start of a new input sequence)."""
        self.v = None

    def detach_state(self) -> None:
        """Keep the potential but cut its autograd history (truncated BPTT)."""
        if self.v is not None:
            self.v = self.v.detach()

    def __deepcopy__(self, memo):
        # the carried potential may hold an autograd graph, which deepcopy refuses: copy it detached
        # (copy.deepcopy / AveragedModel / EMA after a training forward)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if torch.is_tensor(v) and v.grad_fn is not None:
                v = v.detach()
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def _check_single(self, x: torch.Tensor) -> None:
        if x.ndim < 1:
            raise InputError(f"{type(self).__name__}: single-step input must be [B, ...], got a scalar")


def _param_field(name: str) -> property:
    """A field of the module's :class:`NeuronParams`, readable and settable as an attribute."""

    def get(self):
        return getattr(self._params, name)

    def set_(self, value):
        self._params = dataclasses.replace(self._params, **{name: value})  # validated again

    return property(get, set_, doc=f"``params.{name}`` (see :class:`~rmpsnn.functional.NeuronParams`).")


class SpikingNeuron(_Stateful):
    """Layer of LIF/IF neurons (see :func:`rmpsnn.functional.lif_multistep` for the equations).

    The neuron parameters -- ``tau``, ``v_th``, ``reset``, ``surrogate``, ``v_init``,
    ``detach_reset`` -- are those of :class:`~rmpsnn.functional.NeuronParams` (validated there,
    returned by ``self.params`` and readable and settable as attributes); the threshold is a
    buffer ``v_th``, so it moves with ``.to(device)`` and is saved in the ``state_dict``.

    Args:
        step_mode: ``"multi"`` (``[T, B, ...]``) or ``"single"`` (``[B, ...]``, stateful).
        carry_state: in multi-step mode, continue from the previous call's final potential.
        backend: ``"auto"``, ``"cpu"`` (fused numba kernel), ``"triton"`` (fused CUDA kernel) or
            ``"torch"``.
        membrane_storage: how ``u_pre`` is kept for backward: ``"auto"``, ``"float32"`` or
            ``"compact"`` (16-bit, see :func:`rmpsnn.functional.lif_multistep_state`).
    """

    tau = _param_field("tau")
    reset = _param_field("reset")
    surrogate = _param_field("surrogate")
    v_init = _param_field("v_init")
    detach_reset = _param_field("detach_reset")

    def __init__(
        self,
        tau: float = 0.25,
        v_th: float | torch.Tensor = 0.5,
        reset: str = "hard",
        surrogate: str | _surrogate.Surrogate = "inflor",
        *,
        v_init: float | str | torch.Tensor | None = None,
        detach_reset: bool = False,
        step_mode: str = "multi",
        carry_state: bool = False,
        backend: str = "auto",
        membrane_storage: str = "auto",
    ):
        super().__init__(step_mode, carry_state)
        # validated once here; the threshold is read from the buffer below (params.v_th is unused)
        self._params = NeuronParams(tau, v_th, reset, surrogate, v_init, detach_reset)
        self.backend = backend
        self.membrane_storage = membrane_storage
        th = torch.as_tensor(v_th, dtype=torch.get_default_dtype()).clone()
        check_threshold(th)
        self.register_buffer("v_th", th)
        # recorders currently attached to this module (see MembraneRecorder); per instance,
        # empty unless somebody asked, so nothing extra is kept by default
        self._membrane_sinks: list[MembraneRecorder] = []

    @property
    def params(self) -> NeuronParams:
        """This layer's parameters, with its current threshold (e.g. to run the same neuron with
        :func:`rmpsnn.functional.lif_multistep`)."""
        return dataclasses.replace(self._params, v_th=self.v_th)

    def set_threshold(self, v_th: float | torch.Tensor) -> None:
        """Replace the threshold (e.g. after threshold balancing)."""
        th = torch.as_tensor(v_th, dtype=self.v_th.dtype, device=self.v_th.device).clone()
        check_threshold(th.detach().cpu())  # here, once, wherever the layer lives
        self.v_th = th

    def _threshold(self):
        # a Python number on the eager path (cheapest for the kernels); the buffer itself when
        # compiled or exported, where float() of a tensor would break the graph
        if self.v_th.ndim > 0 or self.v_th.device.type != "cpu" or is_tracing(self.v_th):
            return self.v_th  # float() of a GPU tensor would make the host wait, every layer
        return float(self.v_th)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        record = bool(self._membrane_sinks)
        if self.step_mode == "single":
            self._check_single(x)
            x = x.unsqueeze(0)
            v0 = self.v if self.v is not None else self.v_init
        else:
            v0 = self.v if (self.carry_state and self.v is not None) else self.v_init
        spikes, upre, vlast = lif_multistep_state(
            x,
            self._params,
            v_th=self._threshold(),  # the buffer: it follows .to(device) and set_threshold
            v_init=v0,
            need_membrane=record,
            backend=self.backend,
            membrane_storage=self.membrane_storage,
        )
        if self.step_mode == "single" or self.carry_state:
            self.v = vlast
        if record:
            for sink in self._membrane_sinks:
                sink._record(self, upre)
        return spikes[0] if self.step_mode == "single" else spikes

    def extra_repr(self) -> str:
        th = f"{float(self.v_th):g}" if self.v_th.ndim == 0 else f"tensor{tuple(self.v_th.shape)}"
        return (
            f"tau={self.tau:g}, v_th={th}, reset={self.reset!r}, surrogate={self.surrogate.name!r}, "
            f"step_mode={self.step_mode!r}"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neurons with RMP-Loss defaults: ``tau=0.25``, ``v_th=0.5``,
    hard reset, InfLoR surrogate (RMP-Loss eq. 1-3, 5)."""

    def __init__(
        self,
        tau: float = 0.25,
        v_th: float | torch.Tensor = 0.5,
        reset: str = "hard",
        surrogate: str | _surrogate.Surrogate = "inflor",
        **kwargs,
    ):
        super().__init__(tau, v_th, reset, surrogate, **kwargs)


class IF(SpikingNeuron):
    """Integrate-and-fire neurons (no leak) with soft reset by default: the Residual Membrane
    Potential (RMP) neuron of RMP-SNN, ``u[t] = u_pre[t] - v_th o[t]``."""

    def __init__(
        self,
        v_th: float | torch.Tensor = 1.0,
        reset: str = "soft",
        surrogate: str | _surrogate.Surrogate = "inflor",
        **kwargs,
    ):
        super().__init__(1.0, v_th, reset, surrogate, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr().replace("tau=1, ", "")


class OutputIntegrator(_Stateful):
    """Non-spiking read-out (RMP-Loss eq. 4): integrates its input without leak or reset,
    ``u[t] = u[t-1] + x[t]``.

    ``readout`` chooses what forward returns for ``[T, B, K]`` input:
    ``"mean"`` -> ``u[T-1] / T`` (the mean input over time; default), ``"final"`` -> ``u[T-1]``,
    ``"all"`` -> the cumulative potentials ``[T, B, K]`` (accuracy at every horizon in one pass).
    After each call ``final_potential`` and ``mean_potential`` hold ``u[T-1]`` and ``u[T-1]/T``
    (detached: for inspection; the return value carries the gradient).
    In single-step mode the potential and the step count persist until :meth:`reset_state`.
    """

    READOUTS = ("mean", "final", "all")

    def __init__(self, readout: str = "mean", *, step_mode: str = "multi", carry_state: bool = False):
        super().__init__(step_mode, carry_state)
        if readout not in self.READOUTS:
            raise InputError(f"unknown readout {readout!r}; valid values: {', '.join(self.READOUTS)}")
        self.readout = readout
        self.steps = 0
        self.final_potential: torch.Tensor | None = None
        self.mean_potential: torch.Tensor | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "single":
            self._check_single(x)
            x = x.unsqueeze(0)
        elif x.ndim < 2 or x.shape[0] == 0:
            raise InputError(
                f"OutputIntegrator: expected time-major input [T, B, ...] with T >= 1, got shape "
                f"{tuple(x.shape)}"
            )
        keep = self.step_mode == "single" or self.carry_state
        start = self.v if (keep and self.v is not None) else None
        steps0 = self.steps if keep else 0
        cum = torch.cumsum(x, 0) if self.readout == "all" else None
        total = cum[-1] if cum is not None else x.sum(0)
        if start is not None:
            total = total + start
            cum = cum + start if cum is not None else None
        steps = steps0 + x.shape[0]
        # for inspection only: kept without their autograd graph (the return value carries it)
        self.final_potential = total.detach()
        self.mean_potential = self.final_potential / steps
        if keep:
            self.v, self.steps = total, steps
        if self.readout == "mean":
            return total / steps
        if self.readout == "final":
            return total
        return cum if self.step_mode == "multi" else cum[0]

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}, step_mode={self.step_mode!r}"


def reset_states(model: nn.Module) -> None:
    """Reset every stateful module in ``model`` before a new sequence: the potential of each
    neuron and integrator, a converted SNN's IF layers, and the generator of a seeded Poisson
    encoder -- anything with a ``reset_state()`` method."""
    for m in model.modules():
        reset = getattr(m, "reset_state", None)
        if callable(reset):
            reset()


class MembraneRecorder:
    """Collect the pre-spike potentials ``u_pre`` of a model's spiking neurons.

    Used as a context manager; nothing is recorded (or kept) outside it, and the state lives in
    this object, not in globals::

        with MembraneRecorder(model) as rec:
            logits = model(images)
        loss = ce(logits, labels) + lam * rmp_loss(rec.membranes)   # gradients flow

    Args:
        model: any module containing :class:`SpikingNeuron` layers.
        detach: store detached tensors (for plots/statistics; saves the graph's memory).
        layers: optional list of module names (as in ``model.named_modules()``) to record.
        on_record: optional callback ``f(name, u_pre)``; when given, tensors are handed to it
            and not stored (streaming statistics over a data set).
    """

    def __init__(self, model: nn.Module, *, detach: bool = False, layers=None, on_record=None):
        self.model = model
        self.detach = detach
        self.on_record = on_record
        names = {n: m for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
        if layers is not None:
            unknown = [n for n in layers if n not in names]
            if unknown:
                raise InputError(f"no spiking layer named {unknown}; spiking layers are: {list(names)}")
            names = {n: names[n] for n in layers}
        if not names:
            raise InputError("MembraneRecorder: the model has no spiking neurons (LIF/IF) to record")
        self._modules = names
        self._name_of = {id(m): n for n, m in names.items()}
        self.by_layer: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self.membranes: list[torch.Tensor] = []
        # contract 1 (minimal stand-in, the neurons helper's version wins): thresholds[i] is the
        # threshold of the neuron that produced membranes[i], broadcastable to it
        self.thresholds: list[torch.Tensor] = []

    def __enter__(self) -> MembraneRecorder:
        for m in self._modules.values():
            m._membrane_sinks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        for m in self._modules.values():
            if self in m._membrane_sinks:
                m._membrane_sinks.remove(self)

    def _record(self, module: SpikingNeuron, upre: torch.Tensor) -> None:
        name = self._name_of.get(id(module))
        if name is None:
            return
        if self.detach:
            upre = upre.detach()
        if self.on_record is not None:
            self.on_record(name, upre)
            return
        self.by_layer[name].append(upre)
        self.membranes.append(upre)
        self.thresholds.append(module.v_th)

    def clear(self) -> None:
        """Drop everything recorded so far."""
        self.membranes.clear()
        self.thresholds.clear()
        for v in self.by_layer.values():
            v.clear()

    @property
    def layer_names(self) -> list[str]:
        return list(self._modules)


__all__ += ["RESETS", "STEP_MODES"]
