"""Stateless multi-step neuron dynamics over time-major tensors ``[T, B, ...]``.

Discrete LIF neuron (RMP-Loss, Guo et al. ICCV 2023, eq. 1-3)::

    u_pre[t] = tau * u[t-1] + x[t]                      (charge; u[-1] = v_init)
    o[t]     = H(u_pre[t] - v_th)                       (fire)
    u[t]     = u_pre[t] * (1 - o[t])                    (hard reset, to 0)
    u[t]     = u_pre[t] - v_th * o[t]                   (soft reset: the RMP neuron of
                                                         RMP-SNN, Han et al. CVPR 2020)

``tau = 1`` gives the integrate-and-fire (IF) neuron used for ANN-to-SNN conversion.  In the
backward pass ``H'`` is replaced by a surrogate ``φ'(u_pre - v_th)`` (:mod:`rmpsnn.surrogate`),
and the gradient flows through time and through the reset (unless ``detach_reset``).

Three interchangeable implementations compute exactly these equations:

* ``"cpu"``: fused numba kernels for float32 CPU tensors with a built-in surrogate
  (:mod:`rmpsnn.functional._cpu_kernels`): one pass over memory forward, one backward;
* ``"triton"``: the same fused kernels in Triton for CUDA tensors (float32, float16, bfloat16;
  :mod:`rmpsnn.functional._triton_kernels`); on CPU tensors only under Triton's interpreter
  (``TRITON_INTERPRET=1``), which is how they are tested without a GPU;
* ``"torch"``: a plain PyTorch loop over T, for any device and dtype and for custom surrogates.

All save only ``u_pre`` for backward (spikes are recomputed from it), so a spiking layer
keeps the same activation memory as the ReLU it replaces.  ``backend="auto"`` picks the
fused kernel of the tensor's device when it applies.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch

from .. import surrogate as _surrogate
from ..errors import InputError, NonFiniteError
from .kernels import (
    TRITON_DTYPES,
    cpu_kernels,
    device_kernel,
    run_kernel,
    triton_available,
    triton_kernels,
    triton_runs_on,
)

__all__ = [
    "IF_PARAMS",
    "LIF_PARAMS",
    "RESETS",
    "NeuronParams",
    "if_multistep",
    "lif_multistep",
    "lif_multistep_state",
    "signed_if_multistep",
]

RESETS = ("hard", "soft")
BACKENDS = ("auto", "cpu", "torch", "triton")
STORAGES = ("auto", "float32", "compact")


# --------------------------------------------------------------------------- parameters
class _Param(NamedTuple):
    """A per-neuron parameter, broadcastable over one time step's sample shape ``[B, ...]``.

    ``bcast`` broadcasts against ``[B, ...]`` (torch path); ``flat``/``stride`` is the kernel
    layout: neuron ``i`` of the flattened sample uses ``flat[(i // stride) % len(flat)]``.
    """

    bcast: torch.Tensor
    flat: torch.Tensor
    stride: int


def _as_param(value, sample_shape: torch.Size, name: str, ref: torch.Tensor) -> _Param:
    """Normalise a scalar / per-channel / broadcastable tensor to a :class:`_Param`.

    A 1-D tensor whose length equals the channel count ``C`` of ``[B, C, ...]`` is taken per
    channel; any other tensor must broadcast (right-aligned) to ``[B, ...]``.
    """
    if not torch.is_tensor(value):
        if not value > 0 and name == "v_th":  # a number is checked here (no tensor to inspect later)
            raise InputError(
                f"v_th must be > 0 (a neuron with threshold <= 0 fires on every step); got {value:g}"
            )
        t = torch.tensor(float(value), dtype=ref.dtype, device=ref.device)
        return _Param(t, t.reshape(1), 1)
    t = value.to(device=ref.device, dtype=ref.dtype)
    nd = len(sample_shape)
    if t.ndim == 0 or t.numel() == 1:
        t = t.reshape(())
        return _Param(t, t.reshape(1), 1)
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
    if all(full[d] == sample_shape[d] for d in range(lo, hi + 1)):
        flat = t.reshape(-1)
        stride = math.prod(sample_shape[hi + 1 :])
    else:  # varies over non-adjacent dimensions: materialise one value per neuron
        flat = t.expand(sample_shape).reshape(-1)
        stride = 1
    return _Param(t, flat.contiguous(), int(stride))


def is_tracing(t: torch.Tensor | None = None) -> bool:
    """Inside torch.compile / torch.export, or on the meta device: values are unknown, so no
    data-dependent Python branches (and no numba)."""
    return torch.compiler.is_compiling() or (t is not None and t.device.type == "meta")


def check_threshold(v_th: torch.Tensor) -> None:
    if v_th.numel() == 0:
        raise InputError("v_th is an empty tensor; give a number or one value per channel/neuron")
    # a value check cannot run inside a compiled/exported graph, and on a GPU it would make the host
    # wait for every layer: thresholds are checked when set (modules) and on CPU tensors
    if is_tracing(v_th) or v_th.device.type != "cpu":
        return
    if not bool((v_th > 0).all()):
        raise InputError(
            f"v_th must be > 0 everywhere (a neuron with threshold <= 0 fires on every step); "
            f"got min {v_th.min().item():g}"
        )


def _check_input(x: torch.Tensor, fn: str) -> None:
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
    _check_finite(x, fn)


def _check_finite(x: torch.Tensor, fn: str) -> None:
    # On CPU both backends refuse NaN/inf: the fused kernel is compiled for finite values, so it and
    # the PyTorch loop would answer differently (spikes and gradients).  The sum is one vectorised
    # pass (~1/20 of the neuron's forward); only a non-finite sum is checked element by element.
    # (CUDA tensors are not checked: that would synchronise every layer; NaN propagates there.)
    if x.device.type == "cpu" and x.numel() and not is_tracing():
        xd = x.detach()
        if not torch.isfinite(xd.sum()) and not bool(torch.isfinite(xd).all()):
            bad = int((~torch.isfinite(xd)).sum())
            raise NonFiniteError(
                f"{fn}: the input holds {bad} NaN or infinite value(s) of {xd.numel()}; the layers "
                f"before the neuron diverged (lower the learning rate) or the data holds NaN"
            )


def check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:
        raise InputError(f"tau (the leak factor) must be in [0, 1], got {tau}; tau = 1 is the IF neuron")
    return tau


def check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise InputError(f"unknown reset {reset!r}; valid values: {', '.join(RESETS)}")


def check_v_init(v_init) -> None:
    if isinstance(v_init, str) and v_init != "half":
        raise InputError(f"v_init must be None, a number, a tensor or 'half', got {v_init!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class NeuronParams:
    """The parameters of one population of LIF/IF neurons: one definition for the functional API
    (:func:`lif_multistep`, :func:`lif_multistep_state`, :func:`if_multistep`) and the modules
    (:class:`rmpsnn.neurons.LIF` / ``IF``, whose ``params`` attribute holds one).  Validated when
    made; change a field with ``dataclasses.replace(p, v_th=0.7)``.

    Attributes:
        tau: leak factor in ``[0, 1]`` (0.25 as in RMP-Loss; ``1.0`` = IF neuron).
        v_th: threshold > 0: a number, a per-channel vector of length ``C`` (for ``[T, B, C, ...]``)
            or a tensor broadcastable to ``[B, ...]``.  Treated as a constant (no gradient).
        reset: ``"hard"`` (to 0, RMP-Loss eq. 3) or ``"soft"`` (subtract ``v_th``: the RMP neuron).
        surrogate: name in :func:`rmpsnn.surrogate.available` or a ``Surrogate`` instance.
        v_init: initial potential ``u[-1]``: ``None`` (0), a number, a tensor broadcastable to
            ``[B, ...]`` (gradients flow into it), or ``"half"`` for ``v_th / 2``.
        detach_reset: do not back-propagate through the reset term.
    """

    tau: float = 0.25
    v_th: float | torch.Tensor = 0.5
    reset: str = "hard"
    surrogate: str | _surrogate.Surrogate = "inflor"
    v_init: float | str | torch.Tensor | None = None
    detach_reset: bool = False

    def __post_init__(self):
        check_reset(self.reset)
        check_v_init(self.v_init)
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "surrogate", _surrogate.get(self.surrogate))


LIF_PARAMS = NeuronParams()  # RMP-Loss: tau 0.25, v_th 0.5, hard reset, InfLoR
IF_PARAMS = NeuronParams(tau=1.0, v_th=1.0, reset="soft")  # RMP-SNN: the RMP (soft-reset) IF neuron
_FIELDS = tuple(f.name for f in dataclasses.fields(NeuronParams))


def _neuron_args(fn: str, params: NeuronParams | None, defaults: NeuronParams, overrides: dict) -> tuple:
    """The fields of ``params`` (or ``defaults``) with keyword ``overrides``, validated, in the order
    of :class:`NeuronParams`.  No object is made, so this is free inside a compiled graph."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(
            f"{fn}() got unknown argument(s) {', '.join(unknown)}; the neuron parameters are "
            f"{', '.join(_FIELDS)} (see rmpsnn.functional.NeuronParams)"
        )
    if params is None:
        params = defaults
    elif not isinstance(params, NeuronParams):
        raise TypeError(f"{fn}(): params must be a NeuronParams, got {type(params).__name__}")
    values: dict[str, Any] = {f: overrides.get(f, getattr(params, f)) for f in _FIELDS}
    if overrides:  # the overridden fields were not validated yet
        check_reset(values["reset"])
        check_v_init(values["v_init"])
        values["tau"] = check_tau(values["tau"])
        values["surrogate"] = _surrogate.get(values["surrogate"])
    return tuple(values[f] for f in _FIELDS)


# --------------------------------------------------------------------------- torch path
def _torch_forward(x, v0, th, tau, hard, need_upre):
    """Reference loop over T (no autograd graph is needed: backward is :func:`_torch_backward`)."""
    u = v0 if v0 is not None else torch.zeros((), dtype=x.dtype, device=x.device)
    spikes, upres = [], []
    for t in range(x.shape[0]):
        v = tau * u + x[t]
        o = (v >= th).to(x.dtype)
        u = v * (1 - o) if hard else v - th * o
        spikes.append(o)
        if need_upre:
            upres.append(v)
    if u.shape != x.shape[1:]:
        u = u.expand(x.shape[1:])
    return torch.stack(spikes), (torch.stack(upres) if need_upre else None), u


def _torch_backward(gs, gu, gl, upre, th, tau, hard, reset_grad, sg, out=None):
    """BPTT from the saved u_pre alone; the same equations as the fused CPU kernel.
    ``out`` may be ``upre`` itself (each step reads u_pre[t] before writing gx[t])."""
    T = upre.shape[0]
    carry = gl if gl is not None else torch.zeros_like(upre[0])
    gx = torch.empty_like(upre) if out is None else out
    for t in range(T - 1, -1, -1):
        v = upre[t]
        o = (v >= th).to(v.dtype)
        g_o = gs[t] if gs is not None else torch.zeros_like(v)
        if reset_grad:
            g_o = g_o - carry * (v if hard else th)
        g = g_o * sg.grad(v - th) + (carry * (1 - o) if hard else carry)
        if gu is not None:
            g = g + gu[t]
        gx[t] = g
        carry = tau * g
    return gx, carry


# --------------------------------------------------------------------------- fused CPU path
def _np32(v: float):
    return np.float32(v)


_Q_MAX = 32766.0  # compact codes per half window (see _cpu_kernels)


def _dummy(dtype=torch.float32, device=None):
    return torch.empty((1, 1), dtype=dtype, device=device)


def _forward_buffers(x2, need_upre, compact_radius):
    """The outputs both fused forwards fill: ``(store, spikes, upre, codes, ulast, radius)``;
    ``store`` is 1 (u_pre kept in ``x2``'s dtype), 2 (as uint16 codes) or 0 (not kept), and the
    unused buffers are 1-element dummies."""
    T, N = x2.shape
    dev = x2.device
    store = 1 if need_upre else (2 if compact_radius is not None else 0)
    spikes = torch.empty_like(x2)
    upre = torch.empty_like(x2) if store == 1 else _dummy(x2.dtype, dev)
    codes = torch.empty((T, N), dtype=torch.uint16, device=dev) if store == 2 else _dummy(torch.uint16, dev)
    ulast = torch.empty(N, dtype=x2.dtype, device=dev)
    radius = compact_radius if compact_radius is not None else 1.0
    return store, spikes, upre, codes, ulast, radius


def _surrogate_constants(sg) -> tuple[float, float, float]:
    """``(a, b, c)`` of a built-in surrogate for the kernels (``c`` normalises InfLoR's tanh)."""
    a, b = sg.kernel_params
    return a, b, (a / (2 * b * math.tanh(a / 2)) if sg.kernel_id == 0 else 0.0)


def _cpu_forward(x2, v0, th, tau, hard, need_upre, compact_radius=None):
    """x2: [T, N] float32 contiguous; v0: _Param or None.

    Keeps u_pre as float32 when ``need_upre``, as uint16 codes when ``compact_radius`` is given
    (the surrogate's support half-width), else not at all.  Returns (spikes, upre, codes, ulast).
    """
    k = cpu_kernels()
    store, spikes, upre, codes, ulast, radius = _forward_buffers(x2, need_upre, compact_radius)
    v0_flat = v0.flat if v0 is not None else _dummy()[0]
    run_kernel(
        k.lif_forward,
        x2.numpy(),
        v0_flat.numpy(),
        v0.stride if v0 is not None else 1,
        v0 is not None,
        th.flat.numpy(),
        th.stride,
        _np32(tau),
        _np32(1.0 if hard else 0.0),
        store,
        spikes.numpy(),
        upre.numpy(),
        codes.numpy(),
        _np32(_Q_MAX / radius),
        _np32(radius),
        ulast.numpy(),
    )
    return spikes, (upre if store == 1 else None), (codes if store == 2 else None), ulast


def _cpu_backward(gs, gu, gl, saved, th, tau, hard, reset_grad, sg, compact_radius=None, out=None):
    """``saved`` is u_pre [T, N] (float32) or its uint16 codes when ``compact_radius`` is set."""
    k = cpu_kernels()
    T, N = saved.shape
    compact = compact_radius is not None
    gx = torch.empty((T, N), dtype=torch.float32) if out is None else out
    gv0 = torch.empty(N, dtype=torch.float32)
    a, b, c = _surrogate_constants(sg)

    def arr(g):
        return (g.contiguous().reshape(T, N) if g is not None else _dummy()).numpy()

    run_kernel(
        k.lif_backward,
        arr(gs),
        gs is not None,
        arr(gu),
        gu is not None,
        (gl.contiguous().reshape(N) if gl is not None else _dummy()[0]).numpy(),
        gl is not None,
        (_dummy() if compact else saved).numpy(),
        (saved if compact else _dummy(torch.uint16)).numpy(),
        compact,
        _np32(_Q_MAX / compact_radius if compact else 1.0),
        th.flat.numpy(),
        th.stride,
        _np32(tau),
        _np32(1.0 if hard else 0.0),
        _np32(1.0 if reset_grad else 0.0),
        sg.kernel_id,
        _np32(a),
        _np32(b),
        _np32(c),
        gx.numpy(),
        gv0.numpy(),
    )
    return gx, gv0


def _reduce_to_param(g_full: torch.Tensor, p: _Param, sample_shape) -> torch.Tensor:
    """Sum a per-neuron gradient [N] down to the shape the parameter was given in."""
    return g_full.reshape(sample_shape).sum_to_size(p.bcast.shape)


# --------------------------------------------------------------------------- fused Triton path
def _triton_forward(x2, v0, th, tau, hard, need_upre, compact_radius=None):
    """Like :func:`_cpu_forward` for any tensor Triton runs on; ``x2``: [T, N] contiguous float32,
    float16 or bfloat16 (arithmetic in float32).  u_pre is kept in ``x2``'s dtype."""
    k = triton_kernels()
    T, N = x2.shape
    store, spikes, upre, codes, ulast, radius = _forward_buffers(x2, need_upre, compact_radius)
    v0_flat = v0.flat if v0 is not None else th.flat
    if N:
        k.lif_forward_kernel[k.grid(N, k.BLOCK)](
            x2,
            v0_flat,
            v0.stride if v0 is not None else 1,
            v0_flat.numel(),
            th.flat,
            th.stride,
            th.flat.numel(),
            spikes,
            upre,
            codes,
            ulast,
            N,
            T,
            float(tau),
            _Q_MAX / radius,
            float(radius),
            HARD=hard,
            HAS_V0=v0 is not None,
            STORE=store,
            BLOCK=k.BLOCK,
        )
    return spikes, (upre if store == 1 else None), (codes if store == 2 else None), ulast


def _triton_backward(gs, gu, gl, saved, th, tau, hard, reset_grad, sg, dtype, compact_radius=None, out=None):
    """Like :func:`_cpu_backward`; gradients come out in ``dtype`` (the input's), the initial
    potential's per-neuron gradient in float32."""
    k = triton_kernels()
    T, N = saved.shape
    dev = saved.device
    compact = compact_radius is not None
    gx = torch.empty((T, N), dtype=dtype, device=dev) if out is None else out
    gv0 = torch.empty(N, dtype=torch.float32, device=dev)
    a, b, c = _surrogate_constants(sg)
    dummy = _dummy(device=dev)

    def arr(g):
        return g.contiguous().reshape(T, N) if g is not None else dummy

    if N:
        k.lif_backward_kernel[k.grid(N, k.BLOCK)](
            arr(gs),
            arr(gu),
            gl.contiguous().reshape(N) if gl is not None else dummy,
            dummy if compact else saved,
            saved if compact else _dummy(torch.uint16, dev),
            th.flat,
            th.stride,
            th.flat.numel(),
            gx,
            gv0,
            N,
            T,
            (T - 1) * N,
            float(tau),
            compact_radius / _Q_MAX if compact else 1.0,
            float(a),
            float(b),
            float(c),
            HAS_GS=gs is not None,
            HAS_GU=gu is not None,
            HAS_GL=gl is not None,
            COMPACT=compact,
            HARD=hard,
            RESET_GRAD=reset_grad,
            SG_KIND=sg.kernel_id,
            BLOCK=k.BLOCK,
        )
    return gx, gv0


def _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, compact_radius):
    """The fused forward of ``impl``: ``"cpu"`` (numba) or ``"triton"``."""
    run = _cpu_forward if impl == "cpu" else _triton_forward
    return run(x2, v0, th, tau, hard, need_upre, compact_radius)


def _kernel_backward(impl, gs, gu, gl, saved, th, tau, hard, reset_grad, sg, dtype, compact_radius, out=None):
    """The fused backward of ``impl``; ``out`` may be ``saved`` (see the kernels)."""
    args = (gs, gu, gl, saved, th, tau, hard, reset_grad, sg)
    if impl == "cpu":
        return _cpu_backward(*args, compact_radius=compact_radius, out=out)
    return _triton_backward(*args, dtype, compact_radius=compact_radius, out=out)


# --------------------------------------------------------------------------- custom ops
# The fused kernels as opaque torch ops, so that torch.compile keeps them in its graph (dynamo cannot
# trace into numba or a Triton launch) and knows their output shapes from the fake implementations.
# Eager calls skip the op dispatch (and keep the in-place backward); only compiled graphs use these.
class _KernelSurrogate(NamedTuple):
    kernel_id: int
    kernel_params: tuple[float, float]


@torch.library.custom_op("rmpsnn::lif_fused_forward", mutates_args=())
def _lif_forward_op(
    x2: torch.Tensor,
    th_flat: torch.Tensor,
    th_stride: int,
    v0_flat: torch.Tensor | None,
    v0_stride: int,
    tau: float,
    hard: bool,
    need_upre: bool,
    compact_radius: float,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    th = _Param(th_flat, th_flat, th_stride)
    v0 = _Param(v0_flat, v0_flat, v0_stride) if v0_flat is not None else None
    radius = compact_radius if compact_radius > 0 else None
    spikes, upre, codes, ulast = _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, radius)
    upre = upre if upre is not None else x2.new_empty(0)
    codes = codes if codes is not None else x2.new_empty(0, dtype=torch.uint16)
    return spikes, upre, codes, ulast


@_lif_forward_op.register_fake
def _(x2, th_flat, th_stride, v0_flat, v0_stride, tau, hard, need_upre, compact_radius, impl):
    T, N = x2.shape
    upre = torch.empty_like(x2) if need_upre else x2.new_empty(0)
    compact = not need_upre and compact_radius > 0
    codes = x2.new_empty((T, N) if compact else (0,), dtype=torch.uint16)
    return torch.empty_like(x2), upre, codes, x2.new_empty(N)


@torch.library.custom_op("rmpsnn::lif_fused_backward", mutates_args=())
def _lif_backward_op(
    gs: torch.Tensor | None,
    gu: torch.Tensor | None,
    gl: torch.Tensor | None,
    saved: torch.Tensor,
    th_flat: torch.Tensor,
    th_stride: int,
    tau: float,
    hard: bool,
    reset_grad: bool,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
    compact_radius: float,
    dtype: torch.dtype,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    th = _Param(th_flat, th_flat, th_stride)
    sg = _KernelSurrogate(sg_kind, (sg_a, sg_b))
    radius = compact_radius if compact_radius > 0 else None
    return _kernel_backward(impl, gs, gu, gl, saved, th, tau, hard, reset_grad, sg, dtype, radius)


@_lif_backward_op.register_fake
def _(gs, gu, gl, saved, th_flat, th_stride, tau, hard, reset_grad, sg_kind, sg_a, sg_b, radius, dtype, impl):
    T, N = saved.shape
    return saved.new_empty((T, N), dtype=dtype), saved.new_empty(N, dtype=torch.float32)


def _fused_forward(impl, x, v0, th, tau, hard, need_upre, compact_radius=None):
    """The fused kernel of ``impl`` ("cpu" or "triton") on ``x`` [T, B, ...]; returns
    (spikes, upre or None, codes or None, ulast) in the shapes of ``x`` / one step."""
    T = x.shape[0]
    x2 = x.detach().contiguous().reshape(T, -1)
    if torch.compiler.is_compiling():
        spikes, upre, codes, ulast = _lif_forward_op(
            x2,
            th.flat,
            th.stride,
            v0.flat if v0 is not None else None,
            v0.stride if v0 is not None else 1,
            tau,
            hard,
            need_upre,
            compact_radius or 0.0,
            impl,
        )
        upre = upre if need_upre else None
        codes = codes if compact_radius is not None and not need_upre else None
    else:
        spikes, upre, codes, ulast = _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, compact_radius)
    upre = upre.reshape(x.shape) if upre is not None else None
    return spikes.reshape(x.shape), upre, codes, ulast.reshape(x.shape[1:])


def _fused_backward(impl, gs, gu, gl, s2, th, tau, hard, reset_grad, sg, dtype, radius, out):
    """The fused BPTT of ``impl`` on the saved [T, N] membranes (or codes); ``out`` may be ``s2``."""
    if torch.compiler.is_compiling():  # the op cannot write into a buffer it was given
        a, b = sg.kernel_params
        T, N = s2.shape
        g = [t.reshape(T, N) if t is not None else None for t in (gs, gu)]
        gl = gl.reshape(N) if gl is not None else None
        neuron = (th.flat, th.stride, tau, hard, reset_grad)
        return _lif_backward_op(*g, gl, s2, *neuron, sg.kernel_id, a, b, radius or 0.0, dtype, impl)
    return _kernel_backward(impl, gs, gu, gl, s2, th, tau, hard, reset_grad, sg, dtype, radius, out)


# --------------------------------------------------------------------------- autograd
class _LIFFunction(torch.autograd.Function):
    """Forward: fused or looped recurrence.  Saves u_pre only (in the input's dtype, or as 16-bit
    codes inside the surrogate's window when ``compact``); backward is hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, v0_tensor, v0, th, tau, hard, detach_reset, sg, impl, v0_shape, return_upre, compact):
        sample_shape = x.shape[1:]
        fused = impl != "torch"
        radius = sg.support_radius if (compact and fused and not return_upre) else None
        if fused:
            spikes, upre, codes, ulast = _fused_forward(
                impl, x, v0, th, tau, hard, need_upre=radius is None, compact_radius=radius
            )
            saved = codes if radius is not None else upre
        else:
            spikes, upre, ulast = _torch_forward(
                x.detach(), v0.bcast if v0 is not None else None, th.bcast, tau, hard, need_upre=True
            )
            saved = upre
        ctx.save_for_backward(saved)
        ctx.cfg = (th, tau, hard, not detach_reset, sg, impl, v0, v0_shape, radius)
        ctx.layout = (sample_shape, x.shape, x.dtype)
        # When u_pre is private to us, backward writes the input gradient into its buffer: one
        # neuron-sized allocation less at the memory peak of a training step.
        ctx.inplace = not return_upre and radius is None
        ctx.done = False
        ctx.set_materialize_grads(False)
        return spikes, upre, ulast  # upre is None under compact storage (nobody asked for it)

    @staticmethod
    def backward(ctx, gs, gu, gl):
        if ctx.done and ctx.inplace:
            raise RuntimeError(
                "rmpsnn: backward through the same spiking layer twice (retain_graph=True) is not "
                "supported when its membrane buffer was reused for gradients; run the forward "
                "again, or record the membranes (return_membrane=True / MembraneRecorder), which "
                "keeps the buffer intact"
            )
        ctx.done = True
        (saved,) = ctx.saved_tensors
        th, tau, hard, reset_grad, sg, impl, v0, v0_shape, radius = ctx.cfg
        sample_shape, x_shape, dtype = ctx.layout
        T = saved.shape[0]
        out = saved if ctx.inplace else None
        if impl != "torch":
            s2 = saved.reshape(T, -1)
            out2 = s2 if out is not None else None
            grads = (gs, gu, gl, s2)
            gx, gv0 = _fused_backward(impl, *grads, th, tau, hard, reset_grad, sg, dtype, radius, out2)
            gx = gx.reshape(x_shape)
        else:
            gx, gv0 = _torch_backward(gs, gu, gl, saved, th.bcast, tau, hard, reset_grad, sg, out=out)
        g_v0 = None
        if ctx.needs_input_grad[1] and v0 is not None:
            g_full = gv0.reshape(-1) if impl != "torch" else gv0.expand(sample_shape).reshape(-1)
            g_v0 = _reduce_to_param(g_full, v0, sample_shape).reshape(v0_shape)
        return gx, g_v0, None, None, None, None, None, None, None, None, None, None


def _select_backend(backend: str, x: torch.Tensor, sg: _surrogate.Surrogate) -> str:
    """The implementation that runs: ``"cpu"`` (numba), ``"triton"`` or ``"torch"``."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid values: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = os.environ.get("RMPSNN_BACKEND", "auto")
    cpu_fits = x.device.type == "cpu" and x.dtype == torch.float32 and sg.kernel_id is not None
    if backend == "cpu":
        if not cpu_fits:
            raise InputError(
                "backend='cpu' (fused kernel) needs a float32 CPU tensor and a built-in surrogate; "
                f"got {x.dtype} on {x.device} with {sg!r}. Use backend='torch' or 'auto'."
            )
        return "cpu"
    if backend == "triton":
        _check_triton(x, sg)
        return "triton"
    if backend == "torch":
        return "torch"
    # torch.export: the loop, so that an exported graph holds only aten ops and runs anywhere
    # (torch.compile keeps the fused kernels, as custom ops)
    if torch.compiler.is_exporting() or sg.kernel_id is None:
        return "torch"
    return device_kernel(x)


def selected_backend(
    x: torch.Tensor, surrogate: str | _surrogate.Surrogate = "inflor", backend: str = "auto"
) -> str:
    """The implementation that :func:`lif_multistep` runs for a tensor like ``x`` with this
    surrogate and ``backend``: ``"cpu"`` (numba), ``"triton"`` or ``"torch"`` (e.g. to log it)."""
    return _select_backend(backend, x, _surrogate.get(surrogate))


def _check_triton(x: torch.Tensor, sg: _surrogate.Surrogate) -> None:
    if not triton_available():
        raise InputError(
            "backend='triton' needs the triton package (pip install triton; it comes with CUDA "
            "builds of torch); use backend='auto' or 'torch'"
        )
    if not triton_runs_on(x):
        raise InputError(
            f"backend='triton' runs on CUDA tensors; got a tensor on {x.device}. On CPU it runs only "
            f"under Triton's interpreter (TRITON_INTERPRET=1, for testing); use backend='auto' "
            f"(the fused CPU kernel) or 'torch' there"
        )
    if x.dtype not in TRITON_DTYPES:
        raise InputError(
            f"backend='triton' takes float32, float16 or bfloat16 input, got {x.dtype}; use backend='torch'"
        )
    if sg.kernel_id is None:
        raise InputError(
            f"backend='triton' runs the built-in surrogates ({', '.join(_surrogate.available())}); "
            f"{sg!r} has no kernel, so use backend='torch' (or 'auto') for it"
        )


# --------------------------------------------------------------------------- public API
def lif_multistep_state(
    x: torch.Tensor,
    params: NeuronParams | None = None,
    *,
    need_membrane: bool = False,
    backend: str = "auto",
    membrane_storage: str = "auto",
    **neuron,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Like :func:`lif_multistep` but returns ``(spikes, u_pre or None, u_last)``, where
    ``u_last = u[T-1]`` is the potential after the last reset (the state to carry into the next
    call, e.g. for streaming).  ``u_pre`` is ``None`` unless ``need_membrane``.

    ``membrane_storage`` says how u_pre is kept for the backward pass when it is not returned:
    ``"float32"``, or ``"compact"`` -- 16-bit codes of ``z = u_pre - v_th`` inside the
    surrogate's window ``|z| <= h`` (resolution ``h/32766``, the spike bit exact; outside the
    window ``φ' = 0`` and only the spike matters), which halves that memory.  ``"auto"`` (default)
    uses compact storage on the fused paths (CPU, Triton) for surrogates of finite support, unless the
    environment variable ``RMPSNN_MEMBRANE_STORAGE=float32`` is set."""
    fn = "lif_multistep"
    tau, v_th, reset, sg, v_init, detach_reset = _neuron_args(fn, params, LIF_PARAMS, neuron)
    _check_input(x, fn)
    sample_shape = x.shape[1:]
    th = _as_param(v_th, sample_shape, "v_th", x)
    check_threshold(th.flat)
    v0 = None
    v0_tensor = None
    v0_shape = None
    if isinstance(v_init, str):  # "half"
        v0 = _Param(th.bcast * 0.5, th.flat * 0.5, th.stride)
    elif v_init is not None:
        v0 = _as_param(v_init, sample_shape, "v_init", x)
        if torch.is_tensor(v_init):
            v0_tensor, v0_shape = v_init, v_init.shape
    impl = _select_backend(backend, x, sg)
    hard = reset == "hard"
    if membrane_storage not in STORAGES:
        raise InputError(
            f"unknown membrane_storage {membrane_storage!r}; valid values: {', '.join(STORAGES)}"
        )
    compact = membrane_storage == "compact" or (
        membrane_storage == "auto" and os.environ.get("RMPSNN_MEMBRANE_STORAGE", "auto") != "float32"
    )
    if membrane_storage == "compact" and not (impl != "torch" and sg.support_radius is not None):
        raise InputError(
            "membrane_storage='compact' needs a fused kernel (a float32 CPU or a CUDA input) and a "
            f"surrogate of finite support (inflor, rectangle, triangle); got {sg.name!r} on {x.device}"
        )

    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or (v0_tensor is not None and v0_tensor.requires_grad)
    )
    if needs_grad:
        # the user's v_init tensor is an input so that autograd routes its gradient
        v0_in = v0_tensor if v0_tensor is not None else torch.empty(0)
        spikes, upre, ulast = _LIFFunction.apply(
            x, v0_in, v0, th, tau, hard, detach_reset, sg, impl, v0_shape, need_membrane, compact
        )
        return spikes, (upre if need_membrane else None), ulast

    # inference (or nothing requires grad): no autograd graph, u_pre stored only if asked
    with torch.no_grad():
        if impl != "torch":
            spikes, upre, _, ulast = _fused_forward(impl, x, v0, th, tau, hard, need_upre=need_membrane)
        else:
            spikes, upre, ulast = _torch_forward(
                x, v0.bcast if v0 is not None else None, th.bcast, tau, hard, need_upre=need_membrane
            )
    return spikes, upre, ulast


def lif_multistep(
    x: torch.Tensor,
    params: NeuronParams | None = None,
    *,
    return_membrane: bool = False,
    backend: str = "auto",
    membrane_storage: str = "auto",
    **neuron,
):
    """Run a layer of LIF neurons over all time steps of ``x`` (``[T, B, ...]``).

    Implements ``u_pre[t] = tau u[t-1] + x[t]``, ``o[t] = H(u_pre[t] - v_th)`` and the reset
    ``u[t] = u_pre[t](1 - o[t])`` (``reset="hard"``, RMP-Loss eq. 1-3) or
    ``u[t] = u_pre[t] - v_th o[t]`` (``reset="soft"``, the RMP neuron of RMP-SNN).

    Args:
        x: input current, time-major ``[T, B, ...]``, floating point.
        params: the neuron parameters (:class:`NeuronParams`; default :data:`LIF_PARAMS`: tau 0.25,
            v_th 0.5, hard reset, InfLoR surrogate).
        **neuron: any field of :class:`NeuronParams` -- ``tau``, ``v_th``, ``reset``,
            ``surrogate``, ``v_init``, ``detach_reset`` -- overriding ``params``.
        return_membrane: also return the pre-spike potentials ``u_pre`` (``[T, B, ...]``, with
            gradient), as RMP-Loss and the membrane plots need.
        backend: ``"auto"`` (the fused kernel of the device: numba for float32 CPU tensors, Triton
            for CUDA tensors when triton is installed; else PyTorch), ``"cpu"``, ``"triton"`` or
            ``"torch"``.  The environment variable ``RMPSNN_BACKEND`` overrides ``"auto"``.
        membrane_storage: how u_pre is kept for backward (see :func:`lif_multistep_state`).

    Returns:
        spikes ``[T, B, ...]`` (0/1, dtype of ``x``), and ``u_pre`` if ``return_membrane``.
    """
    spikes, upre, _ = lif_multistep_state(
        x, params, need_membrane=return_membrane, backend=backend, membrane_storage=membrane_storage, **neuron
    )
    return (spikes, upre) if return_membrane else spikes


def if_multistep(
    x: torch.Tensor,
    params: NeuronParams | None = None,
    *,
    return_membrane: bool = False,
    backend: str = "auto",
    membrane_storage: str = "auto",
    **neuron,
):
    """Integrate-and-fire neurons: :func:`lif_multistep` with the defaults of :data:`IF_PARAMS`
    -- ``tau = 1`` (no leak), ``v_th = 1`` and the soft reset of the RMP neuron
    (``u[t] = u_pre[t] - v_th o[t]``)."""
    return lif_multistep(
        x,
        params if params is not None else IF_PARAMS,
        return_membrane=return_membrane,
        backend=backend,
        membrane_storage=membrane_storage,
        **neuron,
    )


@torch.no_grad()
def signed_if_multistep(
    x: torch.Tensor,
    v_th: float | torch.Tensor = 1.0,
    *,
    v_init: torch.Tensor | float = 0.0,
    count_init: torch.Tensor | None = None,
    return_membrane: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Signed IF neurons with memory (Wang et al., IJCAI 2022), for converted networks: a neuron
    that has fired may take a spike back when its potential drops below zero.

    ``x``: ``[T, ...]`` input currents; ``v_th``: a number or a tensor broadcastable to one step.
    With ``n`` the net spike count so far (``n[-1] = count_init``, default 0)::

        u[t] = v[t-1] + x[t]                                   (v[-1] = v_init)
        o[t] = +1 if u[t] >= v_th;  -1 if u[t] < 0 and n[t-1] > 0;  else 0
        v[t] = u[t] - v_th o[t]                                (soft reset, both signs)
        n[t] = n[t-1] + o[t]

    ``n[t] v_th + v[t] = v_init + Σ x`` at every step, so while ``0 <= v < v_th`` the count is
    ``floor((v_init + Σ x) / v_th)`` -- with ``v_init = v_th/2`` exactly the quantised,
    shifted ReLU of a QCFS ANN (Bu et al., ICLR 2022) -- instead of over-counting when a late
    negative input follows early spikes (the "unevenness error" of plain IF neurons).  At most one
    spike (of either sign) per step.  Inference only.  Returns ``(spikes in {-1, 0, 1}, v[T-1],
    n[T-1])``, plus ``u`` (``[T, ...]``, before the spikes) with ``return_membrane``.
    """
    if x.ndim < 1 or x.shape[0] == 0:
        raise InputError(f"signed_if_multistep: x must be [T, ...] with T >= 1, got {tuple(x.shape)}")
    th = torch.as_tensor(v_th, dtype=x.dtype, device=x.device)
    v = torch.as_tensor(v_init, dtype=x.dtype, device=x.device).expand(x.shape[1:]).clone()
    n = torch.zeros_like(v) if count_init is None else count_init.to(v.dtype).clone()
    spikes = torch.empty_like(x)
    upre = torch.empty_like(x) if return_membrane else None
    for t in range(x.shape[0]):
        v += x[t]
        if upre is not None:
            upre[t] = v
        o = (v >= th).to(x.dtype) - ((v < 0) & (n > 0)).to(x.dtype)
        v -= o * th
        n += o
        spikes[t] = o
    return (spikes, v, n, upre) if return_membrane else (spikes, v, n)
