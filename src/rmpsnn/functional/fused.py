"""Glue between the neuron dynamics and the fused kernels: buffers, argument layout, and the
kernels as torch custom ops (so that torch.compile keeps them in its graph).

Both kernels run the LIF recurrence of :func:`rmpsnn.functional.reference.lif_step` on ``[T, N]``
tensors with per-neuron parameters given as :class:`~rmpsnn.functional.params.Param` (a flat
array and a stride); the backward also returns the per-neuron gradients of the initial potential
and, when asked (``want_dtau``: PLIF / a learnable leak), of the leak ``tau``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .kernels import cpu_kernels, run_kernel, triton_kernels
from .params import Param

__all__ = ["fused_backward", "fused_forward", "lif_backward_op", "lif_forward_op"]

Q_MAX = 32766.0  # compact codes per half window (see _cpu_kernels)


def _np32(v: float):
    return np.float32(v)


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


# --------------------------------------------------------------------------- numba (CPU)
def _cpu_forward(x2, v0, th, tau, hard, need_upre, compact_radius=None):
    """x2: [T, N] float32 contiguous; v0: Param or None.  Keeps u_pre as float32 when
    ``need_upre``, as uint16 codes when ``compact_radius`` is given (the surrogate's support
    half-width), else not at all.  Returns (spikes, upre, codes, ulast)."""
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
        tau.flat.numpy(),
        tau.stride,
        _np32(1.0 if hard else 0.0),
        store,
        spikes.numpy(),
        upre.numpy(),
        codes.numpy(),
        _np32(Q_MAX / radius),
        _np32(radius),
        ulast.numpy(),
    )
    return spikes, (upre if store == 1 else None), (codes if store == 2 else None), ulast


def _cpu_backward(gs, gu, gl, saved, neuron, sg, dtype, compact_radius=None, out=None):
    """``saved`` is u_pre [T, N] (float32) or its uint16 codes when ``compact_radius`` is set."""
    th, tau, hard, reset_grad, v0, want_dtau = neuron
    k = cpu_kernels()
    T, N = saved.shape
    compact = compact_radius is not None
    gx = torch.empty((T, N), dtype=torch.float32) if out is None else out
    gv0 = torch.empty(N, dtype=torch.float32)
    gtau = torch.empty(N if want_dtau else 1, dtype=torch.float32)
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
        _np32(Q_MAX / compact_radius if compact else 1.0),
        th.flat.numpy(),
        th.stride,
        tau.flat.numpy(),
        tau.stride,
        _np32(1.0 if hard else 0.0),
        _np32(1.0 if reset_grad else 0.0),
        sg.kernel_id,
        _np32(a),
        _np32(b),
        _np32(c),
        gx.numpy(),
        gv0.numpy(),
        want_dtau,
        (v0.flat if v0 is not None else _dummy()[0]).numpy(),
        v0.stride if v0 is not None else 1,
        v0 is not None,
        gtau.numpy(),
    )
    return gx, gv0, (gtau if want_dtau else None)


# --------------------------------------------------------------------------- Triton (CUDA)
def _triton_forward(x2, v0, th, tau, hard, need_upre, compact_radius=None):
    """Like :func:`_cpu_forward` for any tensor Triton runs on; ``x2``: [T, N] contiguous float32,
    float16 or bfloat16 (arithmetic in float32).  u_pre is kept in ``x2``'s dtype."""
    k = triton_kernels()
    T, N = x2.shape
    store, spikes, upre, codes, ulast, radius = _forward_buffers(x2, need_upre, compact_radius)
    v0_flat = v0.flat if v0 is not None else th.flat
    if N:
        k.lif_forward_kernel[k.grid(N, k.BLOCK)](
            x2, v0_flat, v0.stride if v0 is not None else 1, v0_flat.numel(),
            th.flat, th.stride, th.flat.numel(), tau.flat, tau.stride, tau.flat.numel(),
            spikes, upre, codes, ulast, N, T, Q_MAX / radius, float(radius),
            HARD=hard, HAS_V0=v0 is not None, STORE=store, BLOCK=k.BLOCK,
        )  # fmt: skip
    return spikes, (upre if store == 1 else None), (codes if store == 2 else None), ulast


def _triton_backward(gs, gu, gl, saved, neuron, sg, dtype, compact_radius=None, out=None):
    """Like :func:`_cpu_backward`; gradients come out in ``dtype`` (the input's), the initial
    potential's and the leak's per-neuron gradients in float32."""
    th, tau, hard, reset_grad, v0, want_dtau = neuron
    k = triton_kernels()
    T, N = saved.shape
    dev = saved.device
    compact = compact_radius is not None
    gx = torch.empty((T, N), dtype=dtype, device=dev) if out is None else out
    gv0 = torch.empty(N, dtype=torch.float32, device=dev)
    gtau = torch.empty(N if want_dtau else 1, dtype=torch.float32, device=dev)
    a, b, c = _surrogate_constants(sg)
    dummy = _dummy(device=dev)
    v0_flat = v0.flat if v0 is not None else th.flat

    def arr(g):
        return g.contiguous().reshape(T, N) if g is not None else dummy

    if N:
        k.lif_backward_kernel[k.grid(N, k.BLOCK)](
            arr(gs), arr(gu), gl.contiguous().reshape(N) if gl is not None else dummy,
            dummy if compact else saved, saved if compact else _dummy(torch.uint16, dev),
            th.flat, th.stride, th.flat.numel(), tau.flat, tau.stride, tau.flat.numel(),
            v0_flat, v0.stride if v0 is not None else 1, v0_flat.numel(),
            gx, gv0, gtau, N, T, (T - 1) * N,
            compact_radius / Q_MAX if compact else 1.0, float(a), float(b), float(c),
            HAS_GS=gs is not None, HAS_GU=gu is not None, HAS_GL=gl is not None, COMPACT=compact,
            HARD=hard, RESET_GRAD=reset_grad, SG_KIND=sg.kernel_id, WANT_DTAU=want_dtau,
            HAS_V0=v0 is not None, BLOCK=k.BLOCK,
        )  # fmt: skip
    return gx, gv0, (gtau if want_dtau else None)


def _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, compact_radius):
    run = _cpu_forward if impl == "cpu" else _triton_forward
    return run(x2, v0, th, tau, hard, need_upre, compact_radius)


def _kernel_backward(impl, gs, gu, gl, saved, neuron, sg, dtype, compact_radius, out=None):
    run = _cpu_backward if impl == "cpu" else _triton_backward
    return run(gs, gu, gl, saved, neuron, sg, dtype, compact_radius=compact_radius, out=out)


# --------------------------------------------------------------------------- custom ops
# The fused kernels as opaque torch ops, so that torch.compile keeps them in its graph (dynamo cannot
# trace into numba or a Triton launch) and knows their output shapes from the fake implementations.
# Eager calls skip the op dispatch (and keep the in-place backward); only compiled graphs use these.
class _KernelSurrogate(NamedTuple):
    kernel_id: int
    kernel_params: tuple[float, float]


def _param(flat: torch.Tensor | None, stride: int) -> Param | None:
    return Param(flat, flat, stride) if flat is not None else None


@torch.library.custom_op("rmpsnn::lif_fused_forward", mutates_args=())
def lif_forward_op(
    x2: torch.Tensor,
    th_flat: torch.Tensor,
    th_stride: int,
    v0_flat: torch.Tensor | None,
    v0_stride: int,
    tau_flat: torch.Tensor,
    tau_stride: int,
    hard: bool,
    need_upre: bool,
    compact_radius: float,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    th, v0, tau = _param(th_flat, th_stride), _param(v0_flat, v0_stride), _param(tau_flat, tau_stride)
    radius = compact_radius if compact_radius > 0 else None
    spikes, upre, codes, ulast = _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, radius)
    upre = upre if upre is not None else x2.new_empty(0)
    codes = codes if codes is not None else x2.new_empty(0, dtype=torch.uint16)
    return spikes, upre, codes, ulast


@lif_forward_op.register_fake
def _(
    x2, th_flat, th_stride, v0_flat, v0_stride, tau_flat, tau_stride, hard, need_upre, compact_radius, impl
):
    T, N = x2.shape
    upre = torch.empty_like(x2) if need_upre else x2.new_empty(0)
    compact = not need_upre and compact_radius > 0
    codes = x2.new_empty((T, N) if compact else (0,), dtype=torch.uint16)
    return torch.empty_like(x2), upre, codes, x2.new_empty(N)


@torch.library.custom_op("rmpsnn::lif_fused_backward", mutates_args=())
def lif_backward_op(
    gs: torch.Tensor | None,
    gu: torch.Tensor | None,
    gl: torch.Tensor | None,
    saved: torch.Tensor,
    th_flat: torch.Tensor,
    th_stride: int,
    tau_flat: torch.Tensor,
    tau_stride: int,
    v0_flat: torch.Tensor | None,
    v0_stride: int,
    hard: bool,
    reset_grad: bool,
    want_dtau: bool,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
    compact_radius: float,
    dtype: torch.dtype,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    th, v0, tau = _param(th_flat, th_stride), _param(v0_flat, v0_stride), _param(tau_flat, tau_stride)
    sg = _KernelSurrogate(sg_kind, (sg_a, sg_b))
    radius = compact_radius if compact_radius > 0 else None
    neuron = (th, tau, hard, reset_grad, v0, want_dtau)
    gx, gv0, gtau = _kernel_backward(impl, gs, gu, gl, saved, neuron, sg, dtype, radius)
    return gx, gv0, (gtau if gtau is not None else gv0.new_empty(0))


@lif_backward_op.register_fake
def _(gs, gu, gl, saved, th_flat, th_stride, tau_flat, tau_stride, v0_flat, v0_stride, hard, reset_grad,
      want_dtau, sg_kind, sg_a, sg_b, radius, dtype, impl):  # fmt: skip
    T, N = saved.shape
    f32 = torch.float32
    return (
        saved.new_empty((T, N), dtype=dtype),
        saved.new_empty(N, dtype=f32),
        saved.new_empty(N if want_dtau else 0, dtype=f32),
    )


def fused_forward(impl, x, v0, th, tau, hard, need_upre, compact_radius=None):
    """The fused kernel of ``impl`` ("cpu" or "triton") on ``x`` [T, B, ...]; returns
    (spikes, upre or None, codes or None, ulast) in the shapes of ``x`` / one step."""
    T = x.shape[0]
    x2 = x.detach().contiguous().reshape(T, -1)
    if torch.compiler.is_compiling():
        v0_args = (v0.flat, v0.stride) if v0 is not None else (None, 1)
        radius = compact_radius or 0.0
        spikes, upre, codes, ulast = lif_forward_op(
            x2, th.flat, th.stride, *v0_args, tau.flat, tau.stride, hard, need_upre, radius, impl
        )
        upre = upre if need_upre else None
        codes = codes if compact_radius is not None and not need_upre else None
    else:
        spikes, upre, codes, ulast = _kernel_forward(impl, x2, v0, th, tau, hard, need_upre, compact_radius)
    upre = upre.reshape(x.shape) if upre is not None else None
    return spikes.reshape(x.shape), upre, codes, ulast.reshape(x.shape[1:])


def fused_backward(impl, gs, gu, gl, s2, neuron, sg, dtype, radius, out):
    """The fused BPTT of ``impl`` on the saved [T, N] membranes (or codes); ``out`` may be ``s2``.
    ``neuron`` = (th, tau, hard, reset_grad, v0, want_dtau).  Returns (gx, gv0, gtau or None)."""
    if torch.compiler.is_compiling():  # the op cannot write into a buffer it was given
        th, tau, hard, reset_grad, v0, want_dtau = neuron
        a, b = sg.kernel_params
        T, N = s2.shape
        g = [t.reshape(T, N) if t is not None else None for t in (gs, gu)]
        gl = gl.reshape(N) if gl is not None else None
        v0_args = (v0.flat, v0.stride) if v0 is not None else (None, 1)
        gx, gv0, gtau = lif_backward_op(
            *g, gl, s2, th.flat, th.stride, tau.flat, tau.stride, *v0_args, hard, reset_grad, want_dtau,
            sg.kernel_id, a, b, radius or 0.0, dtype, impl,
        )  # fmt: skip
        return gx, gv0, (gtau if want_dtau else None)
    return _kernel_backward(impl, gs, gu, gl, s2, neuron, sg, dtype, radius, out)
