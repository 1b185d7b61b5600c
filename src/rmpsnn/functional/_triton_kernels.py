"""Fused Triton kernels for the spiking-neuron recurrence and RMP-Loss on CUDA tensors.

The same equations and the same memory layout as the numba CPU kernels (``_cpu_kernels``):
``x`` is ``[T, N]`` (contiguous, ``N`` = batch x neurons); a per-neuron parameter (threshold,
initial potential) is a flat array ``p`` of length ``C`` with an inner stride ``S`` -- neuron
``i`` uses ``p[(i // S) % C]``.  Each program owns ``BLOCK`` neurons and runs the whole time loop
on them in registers: one read of ``x`` and one write of each output forward, one pass over the
saved ``u_pre`` backward.  Arithmetic is float32 whatever the storage dtype (float32, float16,
bfloat16), so AMP inputs lose nothing inside the recurrence.

Written against the builtins of ``triton.language`` only (no libdevice, none of the
``@triton.jit`` helpers of ``tl.standard`` such as ``tl.zeros``/``tl.sum``), so the kernels run
unchanged on Triton 3.6-3.9 and under the interpreter (``TRITON_INTERPRET=1``), which executes
them on CPU tensors -- that is how they are tested on machines without a GPU -- even when
``triton`` itself was imported (e.g. by torch.compile) before the variable was set.  The mode of
these kernels is fixed when this module is imported: set the variable before the first call.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Compact membrane codes (uint16), identical to the CPU kernels: codes 1..65533 hold
# z = u_pre - v_th quantised to h/32766 inside the surrogate's window |z| <= h (the sign, i.e.
# the spike, kept exactly: code >= 32767 <=> spike); 0 = below the window, 65535 = above.
Q_OFFSET = 32767.0
Q_MAX = 32766.0
Q_ABOVE = 65535.0
BLOCK = 512  # neurons per program
RMP_BLOCK = 1024  # elements per program of the RMP-Loss sum


@triton.jit
def _tanh(y):
    # tanh from exp (portable across Triton versions and the interpreter); exp overflow gives +-1
    e = tl.exp(2.0 * y)
    return 1.0 - 2.0 / (e + 1.0)


@triton.jit
def _surrogate_grad(z, KIND: tl.constexpr, a, b, c):
    """φ'(z) of the built-in surrogates (ids and parameters as in rmpsnn.surrogate)."""
    az = tl.abs(z)
    if KIND == 0:  # InfLoR(k=a, width=b); c = k / (2 w tanh(k/2))
        t = _tanh(a * z / b)
        g = tl.where(az <= b * 0.5, c * (1.0 - t * t), 0.0)
    elif KIND == 1:  # Rectangle(width=a)
        g = tl.where(az < a * 0.5, 1.0 / a, 0.0)
    elif KIND == 2:  # Sigmoid(alpha=a)
        s = 1.0 / (1.0 + tl.exp(-a * z))
        g = a * s * (1.0 - s)
    elif KIND == 3:  # ATan(alpha=a)
        y = 1.5707963267948966 * a * z
        g = 0.5 * a / (1.0 + y * y)
    elif KIND == 4:  # Triangle(width=a)
        g = tl.maximum(1.0 - az / a, 0.0) / a
    else:  # FastSigmoid(slope=a)
        d = 1.0 + a * az
        g = 1.0 / (d * d)
    return g


@triton.jit
def lif_forward_kernel(
    x_ptr,
    v0_ptr,
    v0_stride,
    v0_len,
    th_ptr,
    th_stride,
    th_len,
    tau_ptr,
    tau_stride,
    tau_len,
    spikes_ptr,
    upre_ptr,
    codes_ptr,
    ulast_ptr,
    N,
    T,
    qscale,
    qhalf,
    HARD: tl.constexpr,
    HAS_V0: tl.constexpr,
    STORE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """u_pre[t] = tau u[t-1] + x[t];  o[t] = u_pre[t] >= th;
    u[t] = u_pre[t] (1 - o[t]) (hard)  or  u_pre[t] - th o[t] (soft).

    ``STORE``: 0 = keep nothing, 1 = u_pre in ``upre`` (its dtype), 2 = uint16 codes in ``codes``.
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    th = tl.load(th_ptr + (offs // th_stride) % th_len, mask=mask, other=1.0).to(tl.float32)
    tau = tl.load(tau_ptr + (offs // tau_stride) % tau_len, mask=mask, other=0.0).to(tl.float32)
    if HAS_V0:
        u = tl.load(v0_ptr + (offs // v0_stride) % v0_len, mask=mask, other=0.0).to(tl.float32)
    else:
        u = tl.full([BLOCK], 0.0, tl.float32)
    xp = x_ptr + offs
    sp = spikes_ptr + offs
    up = upre_ptr + offs
    cp = codes_ptr + offs
    for _t in range(T):
        v = tau * u + tl.load(xp, mask=mask, other=0.0).to(tl.float32)
        o = tl.where(v >= th, 1.0, 0.0)
        tl.store(sp, o.to(spikes_ptr.dtype.element_ty), mask=mask)
        if STORE == 1:
            tl.store(up, v.to(upre_ptr.dtype.element_ty), mask=mask)
        if STORE == 2:
            z = v - th
            q = tl.floor(z * qscale + 0.5)
            q = tl.where(z < 0.0, tl.minimum(q, -1.0), q)  # the sign (= the spike) survives rounding
            q = tl.minimum(tl.maximum(q, -32766.0), 32766.0) + 32767.0
            q = tl.where(z < -qhalf, 0.0, q)
            q = tl.where(z > qhalf, 65535.0, q)
            tl.store(cp, q.to(tl.int32).to(tl.uint16), mask=mask)
        if HARD:
            u = v * (1.0 - o)
        else:
            u = v - th * o
        xp += N
        sp += N
        up += N
        cp += N
    tl.store(ulast_ptr + offs, u.to(ulast_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _saved_potential(up, cp, mask, th, qinv, COMPACT: tl.constexpr):
    """(u_pre, u_pre - th, spike) from what the forward saved: float ``u_pre`` at ``up``, or the
    uint16 code of ``u_pre - th`` at ``cp`` (its sign exact: the spike)."""
    if COMPACT:
        q = tl.load(cp, mask=mask, other=0).to(tl.int32).to(tl.float32) - 32767.0
        z = q * qinv
        return th + z, z, tl.where(q >= 0.0, 1.0, 0.0)
    v = tl.load(up, mask=mask, other=0.0).to(tl.float32)
    return v, v - th, tl.where(v >= th, 1.0, 0.0)


@triton.jit
def _grad_u_pre(g_o, c, v, z, o, th, sg_a, sg_b, sg_c, HARD: tl.constexpr, RESET_GRAD: tl.constexpr,
                SG_KIND: tl.constexpr):  # fmt: skip
    """dL/du_pre[t] (less gu[t]) from dL/do[t] = ``g_o`` and c[t] = dL/du[t]: the spike's path
    through the surrogate (and through the reset, ``RESET_GRAD``) plus the potential kept."""
    if RESET_GRAD:
        if HARD:
            g_o = g_o - c * v
        else:
            g_o = g_o - c * th
    if HARD:
        return g_o * _surrogate_grad(z, SG_KIND, sg_a, sg_b, sg_c) + c * (1.0 - o)
    return g_o * _surrogate_grad(z, SG_KIND, sg_a, sg_b, sg_c) + c


@triton.jit
def _after_reset(u_pre, th, HARD: tl.constexpr):
    """u[t] from u_pre[t]: 0 (hard) or u_pre - th (soft) where the neuron fired."""
    if HARD:
        return tl.where(u_pre >= th, 0.0, u_pre)
    return tl.where(u_pre >= th, u_pre - th, u_pre)


@triton.jit
def lif_backward_kernel(
    gs_ptr,
    gu_ptr,
    gl_ptr,
    upre_ptr,
    codes_ptr,
    th_ptr,
    th_stride,
    th_len,
    tau_ptr,
    tau_stride,
    tau_len,
    v0_ptr,
    v0_stride,
    v0_len,
    gx_ptr,
    gv0_ptr,
    gtau_ptr,
    N,
    T,
    last,
    qinv,
    sg_a,
    sg_b,
    sg_c,
    HAS_GS: tl.constexpr,
    HAS_GU: tl.constexpr,
    HAS_GL: tl.constexpr,
    COMPACT: tl.constexpr,
    HARD: tl.constexpr,
    RESET_GRAD: tl.constexpr,
    SG_KIND: tl.constexpr,
    WANT_DTAU: tl.constexpr,
    HAS_V0: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """BPTT of :func:`lif_forward_kernel` from the saved u_pre alone (or its codes).  With
    ``c[t] = dL/du[t]``:  dL/do[t] = gs[t] - reset_grad c[t] (hard ? u_pre[t] : th);
    dL/du_pre[t] = gu[t] + dL/do[t] φ'(u_pre[t] - th) + c[t] (hard ? 1 - o[t] : 1);
    dL/dx[t] = dL/du_pre[t];  c[t-1] = tau dL/du_pre[t];  dL/du[-1] = c[-1].
    ``gx`` may alias ``upre`` (step t reads u_pre[t] before writing gx[t]).  ``last`` = (T-1)·N,
    computed on the host so that it is 64-bit when it has to be.  ``WANT_DTAU`` (float ``upre``
    only) also writes ``gtau = Σ_t dL/du_pre[t] u[t-1]`` per neuron, ``u[t-1]`` recomputed from
    ``u_pre[t-1]`` (read before step t-1 overwrites it) and ``u[-1]`` = ``v0`` (or 0)."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    th = tl.load(th_ptr + (offs // th_stride) % th_len, mask=mask, other=1.0).to(tl.float32)
    tau = tl.load(tau_ptr + (offs // tau_stride) % tau_len, mask=mask, other=0.0).to(tl.float32)
    acc = tl.full([BLOCK], 0.0, tl.float32)
    if HAS_GL:
        carry = tl.load(gl_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        carry = tl.full([BLOCK], 0.0, tl.float32)
    gsp = gs_ptr + last + offs
    gup = gu_ptr + last + offs
    up = upre_ptr + last + offs
    cp = codes_ptr + last + offs
    gxp = gx_ptr + last + offs
    for _t in range(T):
        v, z, o = _saved_potential(up, cp, mask, th, qinv, COMPACT)
        if HAS_GS:
            g_o = tl.load(gsp, mask=mask, other=0.0).to(tl.float32)
        else:
            g_o = tl.full([BLOCK], 0.0, tl.float32)
        g = _grad_u_pre(g_o, carry, v, z, o, th, sg_a, sg_b, sg_c, HARD, RESET_GRAD, SG_KIND)
        if HAS_GU:
            g += tl.load(gup, mask=mask, other=0.0).to(tl.float32)
        if WANT_DTAU:
            if _t < T - 1:
                acc += g * _after_reset(tl.load(up - N, mask=mask, other=0.0).to(tl.float32), th, HARD)
            elif HAS_V0:
                acc += g * tl.load(v0_ptr + (offs // v0_stride) % v0_len, mask=mask, other=0.0).to(tl.float32)
        tl.store(gxp, g.to(gx_ptr.dtype.element_ty), mask=mask)
        carry = tau * g
        gsp -= N
        gup -= N
        up -= N
        cp -= N
        gxp -= N
    tl.store(gv0_ptr + offs, carry, mask=mask)
    if WANT_DTAU:
        tl.store(gtau_ptr + offs, acc, mask=mask)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _dis(v, th):
    # Dis(o, u) of RMP-Loss eq. 8: 1 - u where u >= th, else -u
    return tl.where(v >= th, 1.0 - v, -v)


@triton.jit
def rmp_forward_kernel(u_ptr, partial_ptr, N, th_ptr, p, MODE: tl.constexpr, BLOCK: tl.constexpr):
    """``partial[b] = Σ_{i in block b} |Dis(u_i)|^p`` (float32 per block; the caller adds the
    blocks in float64).  ``MODE``: 2 -> p = 2, 1 -> p = 1, 0 -> any p > 0.  The threshold is read
    from device memory (a layer's threshold tensor: no host synchronisation)."""
    pid = tl.program_id(0)
    th = tl.load(th_ptr).to(tl.float32)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.abs(_dis(v, th))
    if MODE == 2:
        e = a * a
    elif MODE == 1:
        e = a
    else:
        e = tl.where(a > 0.0, tl.exp2(p * tl.log2(tl.maximum(a, 1e-30))), 0.0)
    tl.store(partial_ptr + pid, tl.reduce(tl.where(mask, e, 0.0), 0, _add))


@triton.jit
def rmp_backward_kernel(u_ptr, scale_ptr, g_ptr, N, th_ptr, p, MODE: tl.constexpr, BLOCK: tl.constexpr):
    """``g = scale · d|Dis(u)|^p/du = -scale · p |Dis|^(p-1) sign(Dis)``; ``scale`` is read from
    device memory (the incoming gradient), so the backward needs no host synchronisation."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr).to(tl.float32)
    th = tl.load(th_ptr).to(tl.float32)
    d = _dis(v, th)
    if MODE == 2:
        gd = d + d
    else:
        sgn = tl.where(d > 0.0, 1.0, tl.where(d < 0.0, -1.0, 0.0))
        if MODE == 1:
            gd = sgn
        else:
            gd = p * tl.exp2((p - 1.0) * tl.log2(tl.maximum(tl.abs(d), 1e-30))) * sgn
    tl.store(g_ptr + offs, (-scale * gd).to(g_ptr.dtype.element_ty), mask=mask)


def grid(n: int, block: int) -> tuple[int]:
    return (triton.cdiv(n, block),)


__all__ = [
    "BLOCK",
    "RMP_BLOCK",
    "grid",
    "lif_backward_kernel",
    "lif_forward_kernel",
    "rmp_backward_kernel",
    "rmp_forward_kernel",
]
