"""Fused float32 CPU kernels for the spiking-neuron recurrence (numba, compiled once, cached).

Why: in eager PyTorch every step of ``u = tau*u + x; o = u >= v_th; u = reset(u, o)`` is a
separate pass over memory, and the backward recurrence needs ~10 more.  Here one kernel
walks the neurons in cache-sized blocks and runs the whole time loop on each block while it
sits in cache, so a layer's neuron costs about one read of its input and one write of each
output -- the same memory traffic as the ReLU it replaces.

Layout: ``x`` is ``[T, N]`` (C-contiguous), ``N`` = neurons x batch.  Per-neuron parameters
(threshold, initial potential) are given as a flat array ``p`` of length ``C`` plus an inner
stride ``S``: neuron ``i`` uses ``p[(i // S) % C]``.  A scalar is ``C = 1``; a per-channel
threshold of a ``[B, C, H, W]`` sample is ``S = H*W``; a full tensor is ``C = N, S = 1``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Neurons handled per block: 2 x 2048 x 4 B of state stays in L1/L2 during the T loop.
BLOCK = 2048

# No "contract"/"reassoc"/"arcp": LLVM may run a loop vectorised or scalar depending on the
# buffers' addresses (runtime alias checks), and with those flags the two paths round differently,
# which made training non-reproducible in the last bits.  These flags keep both paths identical.
_FASTMATH = {"nnan", "ninf", "nsz"}
_JIT = {"fastmath": _FASTMATH, "cache": True, "nogil": True}
_INLINE = {"inline": "always", "fastmath": _FASTMATH, "cache": True}

# The kernels compute in float32 (the training dtype).  Every constant is a float32 global so
# that numba does not promote the arithmetic to float64 (which would halve the SIMD width).
f32 = np.float32
_ONE, _ZERO, _HALF, _QUARTER, _HALF_PI = f32(1), f32(0), f32(0.5), f32(0.25), f32(np.pi / 2)
# Compact membrane storage (uint16) for surrogates of finite support |z| <= h: codes 1..65533
# hold z quantised to h/32766 (sign kept exactly: code >= 32767 <=> spike), code 0 means
# "below the window", 65535 "above"; both decode to |z| > h where φ' = 0.
_Q_OFFSET, _Q_MAX, _Q_ABOVE = f32(32767), f32(32766), f32(65535)
_TANH_CLAMP = f32(7.90531110763549805)
_A13, _A11, _A9, _A7 = (
    f32(-2.76076847742355e-16),
    f32(2.00018790482477e-13),
    f32(-8.60467152213735e-11),
    f32(5.12229709037114e-08),
)
_A5, _A3, _A1 = f32(1.48572235717979e-05), f32(6.37261928875436e-04), f32(4.89352455891786e-03)
_B6, _B4, _B2, _B0 = (
    f32(1.19825839466702e-06),
    f32(1.18534705686654e-04),
    f32(2.26843463243900e-03),
    f32(4.89352518554385e-03),
)


@nb.njit(**_INLINE)
def _tanh(x):
    # Rational minimax approximation (as used by Eigen's vectorised tanh); |error| < 3e-7.
    # Hand-written so that LLVM can vectorise the loop (libm tanh is scalar).
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


@nb.njit(**_INLINE)
def _surrogate_grad(z, kind, a, b, c):
    """φ'(z) of the built-in surrogates; ids and parameters as in rmpsnn.surrogate.

    ``c`` is a precomputed constant (InfLoR: k / (2 w tanh(k/2))).
    """
    az = abs(z)
    if kind == 0:  # InfLoR(k=a, width=b)
        t = _tanh(a * z / b)
        return c * (_ONE - t * t) if az <= b * _HALF else _ZERO
    elif kind == 1:  # Rectangle(width=a)
        return _ONE / a if az < a * _HALF else _ZERO
    elif kind == 2:  # Sigmoid(alpha=a): a s (1-s) with s = (1 + tanh(a z / 2)) / 2
        t = _tanh(_HALF * a * z)
        return _QUARTER * a * (_ONE - t * t)
    elif kind == 3:  # ATan(alpha=a)
        y = _HALF_PI * a * z
        return _HALF * a / (_ONE + y * y)
    elif kind == 4:  # Triangle(width=a)
        return max(_ONE - az / a, _ZERO) / a
    else:  # FastSigmoid(slope=a)
        d = _ONE + a * az
        return _ONE / (d * d)


@nb.njit(**_INLINE)
def _fill_param(out, p, stride, s0, n):
    """out[i] = p[((s0 + i) // stride) % len(p)] without a division per element."""
    c = p.shape[0]
    if c == 1:
        out[:n] = p[0]
        return
    q = (s0 // stride) % c
    r = s0 % stride
    for i in range(n):
        out[i] = p[q]
        r += 1
        if r == stride:
            r = 0
            q += 1
            if q == c:
                q = 0


@nb.njit(parallel=True, **_JIT)
def lif_forward(
    x,
    v0,
    v0_stride,
    has_v0,
    th,
    th_stride,
    tau,
    tau_stride,
    hard,
    store,
    spikes,
    upre,
    codes,
    qscale,
    qhalf,
    ulast,
):
    """u_pre[t] = tau u[t-1] + x[t];  o[t] = u_pre[t] >= th;  (``tau`` and ``th`` per neuron, as
    ``p``/``S`` pairs: see the module docstring)
    u[t] = u_pre[t] (1 - o[t]) (hard)  or  u_pre[t] - th o[t] (soft).

    ``store``: 0 = keep nothing (inference), 1 = u_pre as float32 in ``upre``, 2 = u_pre as
    uint16 codes in ``codes`` (window half-width ``qhalf``, ``qscale = 32766 / qhalf``).
    """
    T, N = x.shape
    nblk = (N + BLOCK - 1) // BLOCK
    one, zero = _ONE, _ZERO
    for blk in nb.prange(nblk):
        s0 = blk * BLOCK
        n = min(N, s0 + BLOCK) - s0
        thb = np.empty(n, dtype=x.dtype)
        taub = np.empty(n, dtype=x.dtype)
        u = np.empty(n, dtype=x.dtype)
        _fill_param(thb, th, th_stride, s0, n)
        _fill_param(taub, tau, tau_stride, s0, n)
        if has_v0:
            _fill_param(u, v0, v0_stride, s0, n)
        else:
            u[:] = zero
        for t in range(T):
            xt = x[t, s0 : s0 + n]
            st = spikes[t, s0 : s0 + n]
            if store == 1:
                ut = upre[t, s0 : s0 + n]
                for i in range(n):
                    v = taub[i] * u[i] + xt[i]
                    o = one if v >= thb[i] else zero
                    ut[i] = v
                    st[i] = o
                    u[i] = v - o * (hard * v + (one - hard) * thb[i])
            elif store == 2:
                ct = codes[t, s0 : s0 + n]
                for i in range(n):
                    v = taub[i] * u[i] + xt[i]
                    z = v - thb[i]
                    o = one if z >= zero else zero
                    q = np.floor(z * qscale + _HALF)
                    q = min(q, -one) if z < zero else q  # the sign (= the spike) survives rounding
                    q = max(min(q, _Q_MAX), -_Q_MAX) + _Q_OFFSET
                    q = zero if z < -qhalf else q
                    q = _Q_ABOVE if z > qhalf else q
                    ct[i] = np.uint16(q)
                    st[i] = o
                    u[i] = v - o * (hard * v + (one - hard) * thb[i])
            else:
                for i in range(n):
                    v = taub[i] * u[i] + xt[i]
                    o = one if v >= thb[i] else zero
                    st[i] = o
                    u[i] = v - o * (hard * v + (one - hard) * thb[i])
        ulast[s0 : s0 + n] = u


@nb.njit(**_INLINE)
def _saved_potential(code, upre, th, compact, qinv):
    """(u_pre, u_pre - th, spike) of one neuron from what the forward saved: the float32
    ``upre``, or the uint16 ``code`` of ``u_pre - th`` (its sign exact: the spike)."""
    if compact:
        q = f32(code) - _Q_OFFSET
        z = q * qinv
        return th + z, z, _ONE if q >= _ZERO else _ZERO
    return upre, upre - th, _ONE if upre >= th else _ZERO


@nb.njit(**_INLINE)
def _accumulate_dtau(acc, g, prev, prev_is_upre, th, hard, n):
    """``acc += dL/du_pre[t] · u[t-1]`` (the leak's gradient, summed over time): ``u[t-1]`` is
    ``prev`` (= u_pre[t-1]) after its reset, or ``prev`` itself (the initial potential, t = 0)."""
    if prev_is_upre:
        for i in range(n):
            w = prev[i]
            o = _ONE if w >= th[i] else _ZERO
            acc[i] += g[i] * (w - o * (hard * w + (_ONE - hard) * th[i]))
    else:
        for i in range(n):
            acc[i] += g[i] * prev[i]


@nb.njit(parallel=True, **_JIT)
def lif_backward(
    gs,
    has_gs,
    gu,
    has_gu,
    gl,
    has_gl,
    upre,
    codes,
    compact,
    qscale,
    th,
    th_stride,
    tau,
    tau_stride,
    hard,
    reset_grad,
    sg_kind,
    sg_a,
    sg_b,
    sg_c,
    gx,
    gv0,
    want_dtau,
    v0,
    v0_stride,
    has_v0,
    gtau,
):
    """Backward of :func:`lif_forward` through time (BPTT), from the saved ``u_pre`` only
    (float32 ``upre``, or uint16 ``codes`` when ``compact``; see :func:`lif_forward`).

    With ``c[t] = dL/du[t]`` (``c[T-1]`` = grad of the final state):
      dL/do[t]     = gs[t] - reset_grad * c[t] * (hard ? u_pre[t] : th)
      dL/du_pre[t] = gu[t] + dL/do[t] φ'(u_pre[t] - th) + c[t] (hard ? 1 - o[t] : 1)
      dL/dx[t] = dL/du_pre[t];   c[t-1] = tau dL/du_pre[t];   dL/du[-1] = c[-1].

    With ``want_dtau`` (float32 ``upre`` only) also the per-neuron leak gradient
    ``gtau = Σ_t dL/du_pre[t] · u[t-1]``, with ``u[t-1]`` recomputed from ``u_pre[t-1]`` (its
    reset) and ``u[-1]`` the initial potential ``v0`` (0 unless ``has_v0``).  ``gx`` may alias
    ``upre``: step ``t`` reads ``u_pre[t-1]`` before step ``t-1`` overwrites it.
    """
    T, N = gx.shape
    nblk = (N + BLOCK - 1) // BLOCK
    one, zero = _ONE, _ZERO
    qinv = one / qscale
    for blk in nb.prange(nblk):
        s0 = blk * BLOCK
        n = min(N, s0 + BLOCK) - s0
        thb = np.empty(n, dtype=gx.dtype)
        taub = np.empty(n, dtype=gx.dtype)
        carry = np.empty(n, dtype=gx.dtype)
        ut = np.empty(1 if compact else n, dtype=gx.dtype)
        acc = np.zeros(n if want_dtau else 1, dtype=gx.dtype)
        u0 = np.zeros(n if want_dtau else 1, dtype=gx.dtype)
        _fill_param(thb, th, th_stride, s0, n)
        _fill_param(taub, tau, tau_stride, s0, n)
        if want_dtau and has_v0:
            _fill_param(u0, v0, v0_stride, s0, n)
        if has_gl:
            carry[:] = gl[s0 : s0 + n]
        else:
            carry[:] = zero
        for t in range(T - 1, -1, -1):
            ct = codes[t, s0 : s0 + n] if compact else codes[0, 0:1]
            if not compact:
                # a copy first: gx may alias upre, and a loop that reads and writes the same
                # memory is not vectorised (LLVM's overlap check fails): 4.5x slower
                ut[:] = upre[t, s0 : s0 + n]
            gxt = gx[t, s0 : s0 + n]
            gst = gs[t, s0 : s0 + n] if has_gs else gs[0, 0:1]
            gut = gu[t, s0 : s0 + n] if has_gu else gu[0, 0:1]
            for i in range(n):
                v, z, o = _saved_potential(ct[i] if compact else zero, ut[i] if not compact else zero,
                                           thb[i], compact, qinv)  # fmt: skip
                c = carry[i]
                g_o = (gst[i] if has_gs else zero) - reset_grad * c * (hard * v + (one - hard) * thb[i])
                g = g_o * _surrogate_grad(z, sg_kind, sg_a, sg_b, sg_c) + c * (one - hard * o)
                if has_gu:
                    g += gut[i]
                gxt[i] = g
                carry[i] = taub[i] * g
            if want_dtau:
                _accumulate_dtau(acc, gxt, upre[t - 1, s0 : s0 + n] if t > 0 else u0, t > 0, thb, hard, n)
        gv0[s0 : s0 + n] = carry
        if want_dtau:
            gtau[s0 : s0 + n] = acc


@nb.njit(**_INLINE)
def _abs_pow(a, p, mode):
    """|d|^p for p = 2 (mode 2), p = 1 (mode 1) or any p (mode 0, scalar pow)."""
    if mode == 2:
        return a * a
    if mode == 1:
        return a
    return a**p


@nb.njit(parallel=True, **_JIT)
def rmp_forward(u, th, p, mode, partial):
    """``partial[b] = Σ_{i in block b} |Dis(u_i)|^p`` (float64), ``Dis = 1 - u`` where ``u >= th``
    else ``-u`` (RMP-Loss eq. 8-9).  One read of ``u``, nothing written per element; the block
    sums are added in order by the caller, so the result does not depend on the thread count."""
    N = u.shape[0]
    nblk = (N + BLOCK - 1) // BLOCK
    one = _ONE
    for blk in nb.prange(nblk):
        s0 = blk * BLOCK
        n = min(N, s0 + BLOCK) - s0
        acc = 0.0
        for i in range(n):
            v = u[s0 + i]
            d = one - v if v >= th else -v
            acc += np.float64(_abs_pow(abs(d), p, mode))
        partial[blk] = acc


@nb.njit(parallel=True, **_JIT)
def rmp_backward(u, th, p, mode, scale, g):
    """``g = scale · d|Dis(u)|^p / du = -scale · p |Dis|^(p-1) sign(Dis)`` (dDis/du = -1 on
    both sides of the threshold)."""
    N = u.shape[0]
    nblk = (N + BLOCK - 1) // BLOCK
    one, zero = _ONE, _ZERO
    for blk in nb.prange(nblk):
        s0 = blk * BLOCK
        n = min(N, s0 + BLOCK) - s0
        for i in range(n):
            v = u[s0 + i]
            d = one - v if v >= th else -v
            if mode == 2:
                gd = d + d
            else:
                a = abs(d)
                sgn = one if d > zero else (-one if d < zero else zero)
                gd = sgn if mode == 1 else p * a ** (p - one) * sgn
            g[s0 + i] = -scale * gd


@nb.njit(parallel=True, **_JIT)
def signed_if_forward(x, th, th_stride, v, count, spikes, upre, store):
    """Signed IF neurons with memory (inference; see ``functional.neuron.signed_if_multistep``)::

        u[t] = v[t-1] + x[t];  o[t] = +1 if u[t] >= th;  -1 if u[t] < 0 and n[t-1] > 0;  else 0
        v[t] = u[t] - th o[t];  n[t] = n[t-1] + o[t]

    ``v`` and ``count`` (``[N]``) hold ``v[-1]``, ``n[-1]`` on entry and ``v[T-1]``, ``n[T-1]``
    on return; ``store`` = 1 writes ``u`` to ``upre``.  The same float32 operations as the
    PyTorch loop (``o * th`` is exact), so the two agree bit for bit."""
    T, N = x.shape
    nblk = (N + BLOCK - 1) // BLOCK
    one, zero = _ONE, _ZERO
    for blk in nb.prange(nblk):
        s0 = blk * BLOCK
        n = min(N, s0 + BLOCK) - s0
        thb = np.empty(n, dtype=x.dtype)
        _fill_param(thb, th, th_stride, s0, n)
        vb = v[s0 : s0 + n].copy()
        cb = count[s0 : s0 + n].copy()
        for t in range(T):
            xt = x[t, s0 : s0 + n]
            st = spikes[t, s0 : s0 + n]
            for i in range(n):
                u = vb[i] + xt[i]
                if store == 1:
                    upre[t, s0 + i] = u
                o = one if u >= thb[i] else (-one if (u < zero and cb[i] > zero) else zero)
                st[i] = o
                vb[i] = u - o * thb[i]
                cb[i] += o
        v[s0 : s0 + n] = vb
        count[s0 : s0 + n] = cb


__all__ = ["BLOCK", "lif_backward", "lif_forward", "rmp_backward", "rmp_forward", "signed_if_forward"]
