"""Neuron parameters and input checks, shared by every implementation of the neuron dynamics.

A parameter (threshold ``v_th``, leak ``tau``, initial potential ``v_init``) is a number or a tensor:
a scalar, one value per channel (a 1-D tensor of length ``C`` for ``[T, B, C, ...]`` input) or a
tensor broadcastable to one time step ``[B, ...]``.  Tensors may require gradients (learnable
neurons); :class:`Param` holds both the broadcastable view the PyTorch code uses and the flat
``(values, stride)`` layout the fused kernels use.  The LIF defaults of RMP-Loss (tau 0.25,
v_th 0.5, hard reset, InfLoR) are stated once, in :class:`NeuronParams`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import torch

from .. import surrogate as _surrogate
from ..errors import InputError, NonFiniteError

__all__ = [
    "IF_PARAMS",
    "LIF_PARAMS",
    "RESETS",
    "NeuronParams",
    "Param",
    "as_param",
    "check_input",
    "check_number",
    "check_tau",
    "check_threshold",
    "is_tracing",
    "neuron_args",
]

RESETS = ("hard", "soft")


class Param(NamedTuple):
    """A per-neuron parameter, broadcastable over one time step's sample shape ``[B, ...]``.

    ``bcast`` broadcasts against ``[B, ...]`` (PyTorch code, with the caller's autograd history);
    ``flat``/``stride`` is the kernel layout: neuron ``i`` of the flattened sample uses
    ``flat[(i // stride) % len(flat)]`` (detached)."""

    bcast: torch.Tensor
    flat: torch.Tensor
    stride: int


def check_number(value, name: str) -> None:
    """A parameter given as something other than a number or a tensor is one clear error."""
    if torch.is_tensor(value):
        if value.dtype.is_complex or value.dtype == torch.bool:
            raise InputError(f"{name} must be a real number or tensor, got a {value.dtype} tensor")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{name} must be a number or a tensor (scalar, per channel or per neuron), got "
            f"{type(value).__name__} {value!r}"
        )
    if not math.isfinite(float(value)):
        raise InputError(f"{name} must be a finite number, got {value}")


def as_param(value, sample_shape: torch.Size, name: str, ref: torch.Tensor) -> Param:
    """Normalise a scalar / per-channel / broadcastable tensor to a :class:`Param`.

    A 1-D tensor whose length equals the channel count ``C`` of ``[B, C, ...]`` is taken per
    channel; any other tensor must broadcast (right-aligned) to ``[B, ...]``.
    """
    if not torch.is_tensor(value):
        check_number(value, name)
        if name == "v_th" and not value > 0:  # a number is checked here (no tensor to inspect later)
            raise InputError(
                f"v_th must be > 0 (a neuron with threshold <= 0 fires on every step); got {value:g}"
            )
        t = torch.tensor(float(value), dtype=ref.dtype, device=ref.device)
        return Param(t, t.reshape(1), 1)
    t = value.to(device=ref.device, dtype=ref.dtype)
    nd = len(sample_shape)
    if t.ndim == 0 or t.numel() == 1:
        t = t.reshape(())
        return Param(t, t.detach().reshape(1), 1)
    if t.ndim == 1 and nd >= 2 and t.shape[0] == sample_shape[1]:
        t = t.reshape((1, -1) + (1,) * (nd - 2))
    if t.ndim > nd:
        raise InputError(
            f"{name} has shape {tuple(value.shape)}, more dimensions than one time step of the input "
            f"{tuple(sample_shape)}; give a scalar, a per-channel vector of length C, or a tensor "
            f"broadcastable to [B, ...]"
        )
    full = (1,) * (nd - t.ndim) + tuple(t.shape)
    for d, (p, s) in enumerate(zip(full, sample_shape, strict=True)):
        if p not in (1, s):
            raise InputError(
                f"{name} of shape {tuple(value.shape)} does not match one time step of the input "
                f"{tuple(sample_shape)} (dimension {d}: {p} vs {s}); give a scalar, a per-channel "
                f"vector of length {sample_shape[1] if nd >= 2 else sample_shape[0]}, or a tensor "
                f"broadcastable to the input's [B, ...] shape"
            )
    t = t.reshape(full)
    varying = [d for d in range(nd) if full[d] != 1]
    lo, hi = varying[0], varying[-1]
    td = t.detach()
    if all(full[d] == sample_shape[d] for d in range(lo, hi + 1)):
        flat = td.reshape(-1)
        stride = math.prod(sample_shape[hi + 1 :])
    else:  # varies over non-adjacent dimensions: materialise one value per neuron
        flat = td.expand(sample_shape).reshape(-1)
        stride = 1
    return Param(t, flat.contiguous(), int(stride))


def reduce_to_param(g_full: torch.Tensor, p: Param, sample_shape) -> torch.Tensor:
    """Sum a per-neuron gradient [N] down to the shape the parameter was given in."""
    return g_full.reshape(sample_shape).sum_to_size(p.bcast.shape)


def is_tracing(t: torch.Tensor | None = None) -> bool:
    """Inside torch.compile / torch.export, or on the meta device: values are unknown, so no
    data-dependent Python branches (and no numba)."""
    return torch.compiler.is_compiling() or (t is not None and t.device.type == "meta")


def _checkable(t: torch.Tensor) -> bool:
    # a value check cannot run inside a compiled/exported graph, and on a GPU it would make the host
    # wait for every layer: parameters are checked when set (modules) and on CPU tensors
    return not (is_tracing(t) or t.device.type != "cpu")


def check_threshold(v_th: torch.Tensor) -> None:
    if v_th.numel() == 0:
        raise InputError("v_th is an empty tensor; give a number or one value per channel/neuron")
    if not _checkable(v_th):
        return
    v_th = v_th.detach()
    if not bool((v_th > 0).all()):
        raise InputError(
            f"v_th must be > 0 everywhere (a neuron with threshold <= 0 fires on every step); "
            f"got min {v_th.min().item():g}"
        )


def check_tau(tau):
    """The leak factor: a number in ``[0, 1]`` (returned as a float) or a tensor of such values."""
    check_number(tau, "tau")
    if torch.is_tensor(tau):
        if tau.numel() == 0:
            raise InputError("tau is an empty tensor; give a number or one value per channel/neuron")
        if _checkable(tau) and not bool(((tau.detach() >= 0) & (tau.detach() <= 1)).all()):
            raise InputError("tau (the leak factor) must be in [0, 1] everywhere; tau = 1 is the IF neuron")
        return tau
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:
        raise InputError(f"tau (the leak factor) must be in [0, 1], got {tau}; tau = 1 is the IF neuron")
    return tau


def check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise InputError(f"unknown reset {reset!r}; valid values: {', '.join(RESETS)}")


def check_v_init(v_init) -> None:
    if isinstance(v_init, str):
        if v_init != "half":
            raise InputError(f"v_init must be None, a number, a tensor or 'half', got {v_init!r}")
    elif v_init is not None:
        check_number(v_init, "v_init")


def check_input(x: torch.Tensor, fn: str) -> None:
    if not torch.is_tensor(x):
        raise TypeError(f"{fn}: expected a tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise InputError(
            f"{fn}: expected a time-major tensor [T, B, ...] with at least 2 dimensions, got shape "
            f"{tuple(x.shape)}; for a single time step use x.unsqueeze(0), or the stateful module "
            f"with step_mode='single'"
        )
    if x.shape[0] == 0:
        raise InputError(f"{fn}: the time dimension (dim 0) is empty (T = 0); give at least one time step")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: expected a floating-point tensor, got {x.dtype}")
    check_finite(x, fn, steps=x.shape[0])


def check_finite(x: torch.Tensor, fn: str, what: str = "the input", steps: int | None = None) -> None:
    """Refuse NaN/inf (on CPU): the fused kernel is compiled for finite values, so it and the
    PyTorch loop would answer differently (spikes and gradients).  With ``steps`` (the T of a
    neuron's input) also finite values so large that the potential can overflow over T steps
    (``max |x| · T`` above the dtype's largest value), for the same reason.  One vectorised
    min/max pass (``aminmax`` propagates NaN and inf and is ~20x cheaper than ``abs().max()``
    or a max-norm, which allocate or cast: this runs before every neuron layer); only a
    non-finite result is examined element by element.  (CUDA tensors are not checked: that
    would synchronise every layer; NaN propagates there.)"""
    if x.device.type != "cpu" or not x.numel() or is_tracing() or not x.is_floating_point():
        return
    xd = x.detach()
    lo, hi = torch.aminmax(xd)
    peak = float(torch.maximum(-lo, hi))  # NaN or inf when any element is
    if not math.isfinite(peak) and not bool(torch.isfinite(xd).all()):
        bad = int((~torch.isfinite(xd)).sum())
        raise NonFiniteError(
            f"{fn}: {what} holds {bad} NaN or infinite value(s) of {xd.numel()}; the layers "
            f"before the neuron diverged (lower the learning rate) or the data holds NaN"
        )
    if steps is not None and peak * steps > torch.finfo(x.dtype).max:
        raise NonFiniteError(
            f"{fn}: {what} reaches |x| = {peak:.3g}, so over T = {steps} steps the membrane potential "
            f"can overflow {x.dtype} (max {torch.finfo(x.dtype).max:.3g}); scale the input down"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class NeuronParams:
    """The parameters of one population of LIF/IF neurons: one definition for the functional API
    (:func:`lif_multistep`, :func:`lif_multistep_state`, :func:`if_multistep`) and the modules
    (:class:`rmpsnn.neurons.LIF` / ``IF``, whose ``params`` attribute holds one).  Validated when
    made; change a field with ``dataclasses.replace(p, v_th=0.7)``.  The field defaults are the
    LIF defaults of RMP-Loss, stated here only.

    Attributes:
        tau: leak factor in ``[0, 1]`` (0.25 as in RMP-Loss; ``1.0`` = IF neuron): a number, or a
            tensor (scalar, per channel, per neuron) that may require gradients (learnable leak).
        v_th: threshold > 0: a number, a per-channel vector of length ``C`` (for ``[T, B, C, ...]``)
            or a tensor broadcastable to ``[B, ...]``; a tensor may require gradients.
        reset: ``"hard"`` (to 0, RMP-Loss eq. 3) or ``"soft"`` (subtract ``v_th``: the RMP neuron).
        surrogate: name in :func:`rmpsnn.surrogate.available` or a ``Surrogate`` instance.
        v_init: initial potential ``u[-1]``: ``None`` (0), a number, a tensor broadcastable to
            ``[B, ...]`` (gradients flow into it), or ``"half"`` for ``v_th / 2``.
        detach_reset: do not back-propagate through the reset term.
    """

    tau: float | torch.Tensor = 0.25
    v_th: float | torch.Tensor = 0.5
    reset: str = "hard"
    surrogate: str | _surrogate.Surrogate = "inflor"
    v_init: float | str | torch.Tensor | None = None
    detach_reset: bool = False

    def __post_init__(self):
        check_reset(self.reset)
        check_v_init(self.v_init)
        check_number(self.v_th, "v_th")
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "surrogate", _surrogate.get(self.surrogate))


LIF_PARAMS = NeuronParams()  # RMP-Loss: tau 0.25, v_th 0.5, hard reset, InfLoR
IF_PARAMS = NeuronParams(tau=1.0, v_th=1.0, reset="soft")  # RMP-SNN: the RMP (soft-reset) IF neuron
FIELDS = tuple(f.name for f in dataclasses.fields(NeuronParams))


def neuron_args(fn: str, params: NeuronParams | None, defaults: NeuronParams, overrides: dict) -> tuple:
    """The fields of ``params`` (or ``defaults``) with keyword ``overrides``, validated, in the order
    of :class:`NeuronParams`.  No object is made, so this is free inside a compiled graph."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise TypeError(
            f"{fn}() got unknown argument(s) {', '.join(unknown)}; the neuron parameters are "
            f"{', '.join(FIELDS)} (see rmpsnn.functional.NeuronParams)"
        )
    if params is None:
        params = defaults
    elif not isinstance(params, NeuronParams):
        raise TypeError(f"{fn}(): params must be a NeuronParams, got {type(params).__name__}")
    values: dict[str, Any] = {f: overrides.get(f, getattr(params, f)) for f in FIELDS}
    if overrides:  # the overridden fields were not validated yet
        check_reset(values["reset"])
        check_v_init(values["v_init"])
        values["tau"] = check_tau(values["tau"])
        values["surrogate"] = _surrogate.get(values["surrogate"])
    return tuple(values[f] for f in FIELDS)
