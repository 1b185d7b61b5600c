"""The shared machinery of spiking modules: time-step state (:class:`Stateful`), the base of every
spiking layer (:class:`Neuron`: recording, its firing threshold), the non-spiking read-out
(:class:`OutputIntegrator`, RMP-Loss eq. 4), :func:`reset_states`, and :class:`MembraneRecorder`,
which collects the pre-spike potentials of a model's neurons and their thresholds.

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

import torch
from torch import nn

from ..errors import InputError
from ..functional.params import as_param

__all__ = ["STEP_MODES", "MembraneRecorder", "Neuron", "OutputIntegrator", "Stateful", "reset_states"]

STEP_MODES = ("multi", "single")


def _check_step_mode(mode: str) -> None:
    if mode not in STEP_MODES:
        raise InputError(f"unknown step_mode {mode!r}; valid values: {', '.join(STEP_MODES)}")


class Stateful(nn.Module):
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

    def _check_multi(self, x: torch.Tensor) -> None:
        """Multi-step input must be time-major ``[T, B, ...]`` with a feature axis: a rank-2
        tensor is ambiguous (``[B, C]`` of one step would silently be read as T = B)."""
        if x.ndim < 3:
            raise InputError(
                f"{type(self).__name__}: multi-step input must be time-major [T, B, ...] with at least "
                f"one feature dimension, got shape {tuple(x.shape)}; for one step of [B, C] use "
                f"step_mode='single' or x.unsqueeze(0), and for [T, B] use x.unsqueeze(-1)"
            )


class Neuron(Stateful):
    """Base of every spiking layer: what :class:`MembraneRecorder` and the monitors see.

    A subclass runs its dynamics in ``forward`` and hands each call's pre-spike potentials to
    :meth:`_emit` (only computed when somebody records: ``self.recording``), and says through
    :meth:`firing_threshold` what its firing threshold is -- a number or a tensor (scalar, per channel,
    per neuron; learnable or not), which RMP-Loss and the quantisation error measure against.
    """

    def __init__(self, step_mode: str = "multi", carry_state: bool = False):
        super().__init__(step_mode, carry_state)
        # recorders currently attached to this module (see MembraneRecorder); per instance,
        # empty unless somebody asked, so nothing extra is kept by default
        self._membrane_sinks: list[MembraneRecorder] = []

    @property
    def recording(self) -> bool:
        return bool(self._membrane_sinks)

    def firing_threshold(self) -> float | torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def threshold_like(self, upre: torch.Tensor) -> torch.Tensor:
        """This layer's threshold as a tensor broadcastable to its membranes ``[T, B, ...]``
        (0-d for a scalar, e.g. ``[1, C, 1, 1]`` per channel), with its gradient if learnable."""
        th = self.firing_threshold()
        if not torch.is_tensor(th):
            return torch.tensor(float(th), dtype=upre.dtype, device=upre.device)
        return as_param(th, upre.shape[1:], "v_th", upre).bcast

    def _emit(self, upre: torch.Tensor) -> None:
        for sink in self._membrane_sinks:
            sink.record(self, upre)


class OutputIntegrator(Stateful):
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
        loss = ce(logits, labels) + lam * rmp_loss(rec.membranes, rec.thresholds)

    ``rec.membranes[i]`` is a ``[T, B, ...]`` potential and ``rec.thresholds[i]`` the threshold of
    the neuron that produced it (a tensor broadcastable to it, with its gradient if learnable).

    Args:
        model: any module containing spiking layers (:class:`Neuron`: LIF, IF, PLIF, ...).
        detach: store detached tensors (for plots/statistics; saves the graph's memory).
        layers: optional list of module names (as in ``model.named_modules()``) to record.
        on_record: optional callback ``f(name, u_pre)``; when given, tensors are handed to it
            and not stored (streaming statistics over a data set).
    """

    def __init__(self, model: nn.Module, *, detach: bool = False, layers=None, on_record=None):
        self.model = model
        self.detach = detach
        self.on_record = on_record
        names = {n: m for n, m in model.named_modules() if isinstance(m, Neuron)}
        if layers is not None:
            unknown = [n for n in layers if n not in names]
            if unknown:
                raise InputError(f"no spiking layer named {unknown}; spiking layers are: {list(names)}")
            names = {n: names[n] for n in layers}
        if not names:
            raise InputError(
                "MembraneRecorder: the model has no spiking neurons (LIF, IF, PLIF, ...) to record"
            )
        self._modules = names
        self._name_of = {id(m): n for n, m in names.items()}
        self.by_layer: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self.membranes: list[torch.Tensor] = []
        self.thresholds: list[torch.Tensor] = []

    def __enter__(self) -> MembraneRecorder:
        for m in self._modules.values():
            m._membrane_sinks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        for m in self._modules.values():
            if self in m._membrane_sinks:
                m._membrane_sinks.remove(self)

    def record(self, module: Neuron, upre: torch.Tensor) -> None:
        """Take ``module``'s pre-spike potential ``upre`` ``[T, B, ...]`` (called by the neuron's
        :meth:`Neuron._emit` while this recorder is attached; modules it does not watch are ignored)."""
        name = self._name_of.get(id(module))
        if name is None:
            return
        if self.detach:
            upre = upre.detach()
        if self.on_record is not None:
            self.on_record(name, upre)
            return
        th = module.threshold_like(upre)
        self.by_layer[name].append(upre)
        self.membranes.append(upre)
        self.thresholds.append(th.detach() if self.detach else th)

    def clear(self) -> None:
        """Drop everything recorded so far."""
        self.membranes.clear()
        self.thresholds.clear()
        for v in self.by_layer.values():
            v.clear()

    @property
    def layer_names(self) -> list[str]:
        return list(self._modules)
