"""Stateless multi-step neuron dynamics over time-major tensors ``[T, B, ...]``: the public API.

Discrete LIF neuron (RMP-Loss, Guo et al. ICCV 2023, eq. 1-3)::

    u_pre[t] = tau * u[t-1] + x[t]                      (charge; u[-1] = v_init)
    o[t]     = H(u_pre[t] - v_th)                       (fire)
    u[t]     = u_pre[t] * (1 - o[t])                    (hard reset, to 0)
    u[t]     = u_pre[t] - v_th * o[t]                   (soft reset: the RMP neuron of
                                                         RMP-SNN, Han et al. CVPR 2020)

``tau = 1`` gives the integrate-and-fire (IF) neuron used for ANN-to-SNN conversion.  In the
backward pass ``H'`` is replaced by a surrogate ``φ'(u_pre - v_th)`` (:mod:`rmpsnn.surrogate`),
and the gradient flows through time and through the reset (unless ``detach_reset``).

Where the pieces live: parameters and checks in :mod:`.params`; the reference step (autograd, the
ground truth) and the memory-lean PyTorch loop in :mod:`.reference`; the kernel registry and the
one choice of implementation in :mod:`.kernels`; the kernel glue and custom ops in :mod:`.fused`.

Implementations, chosen by :func:`rmpsnn.functional.kernels.select_kernel`:

* ``"cpu"``: fused numba kernels for float32 CPU tensors with a built-in surrogate;
* ``"triton"``: the same fused kernels in Triton for CUDA tensors (float32, float16, bfloat16);
  on CPU tensors only under Triton's interpreter (``TRITON_INTERPRET=1``, for tests);
* ``"torch"``: PyTorch for any device, dtype and surrogate -- a hand-written BPTT loop for constant
  parameters, autograd through :func:`~rmpsnn.functional.reference.lif_step` when a parameter has
  no kernel for its gradient (a learnable threshold).

The fused kernels and the loop save only ``u_pre`` for backward (spikes are recomputed from it),
so a spiking layer keeps the same activation memory as the ReLU it replaces.  A learnable leak
``tau`` (PLIF) runs fused too: the kernels' backward reduces ``dL/dtau`` over time.
"""

from __future__ import annotations

import math
import os

import torch

from .. import surrogate as _surrogate
from ..errors import InputError
from .fused import fused_backward, fused_forward
from .kernels import cpu_kernels, run_kernel, select_kernel
from .params import (
    IF_PARAMS,
    LIF_PARAMS,
    NeuronParams,
    Param,
    as_param,
    check_finite,
    check_input,
    check_threshold,
    neuron_args,
    reduce_to_param,
)
from .reference import LIF_SPEC, Firing, run_reference, torch_backward, torch_forward

__all__ = [
    "if_multistep",
    "lif_multistep",
    "lif_multistep_state",
    "selected_backend",
    "signed_if_multistep",
]

STORAGES = ("auto", "float32", "compact")


class _LIFFunction(torch.autograd.Function):
    """Forward: fused or looped recurrence.  Saves u_pre only (in the input's dtype, or as 16-bit
    codes inside the surrogate's window when ``compact``); backward is hand-written BPTT, with the
    gradients of the initial potential and (fused kernels) of a tensor leak ``tau``."""

    @staticmethod
    def forward(
        ctx, x, v0_tensor, tau_tensor, v0, th, tau, hard, detach_reset, sg, impl, return_upre, compact
    ):
        sample_shape = x.shape[1:]
        fused = impl != "torch"
        want_dtau = fused and ctx.needs_input_grad[2]
        # the leak's gradient needs u[t-1], recomputed from the float u_pre: no compact codes then
        radius = sg.support_radius if (compact and fused and not return_upre and not want_dtau) else None
        if fused:
            spikes, upre, codes, ulast = fused_forward(
                impl, x, v0, th, tau, hard, need_upre=radius is None, compact_radius=radius
            )
            saved = codes if radius is not None else upre
        else:
            v0b = v0.bcast.detach() if v0 is not None else None
            spikes, upre, ulast = torch_forward(x.detach(), v0b, th.bcast, tau.bcast, hard, need_upre=True)
            saved = upre
        ctx.save_for_backward(saved)
        ctx.cfg = (th, tau, hard, not detach_reset, sg, impl, v0, radius, want_dtau)
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
        th, tau, hard, reset_grad, sg, impl, v0, radius, want_dtau = ctx.cfg
        sample_shape, x_shape, dtype = ctx.layout
        T = saved.shape[0]
        out = saved if ctx.inplace else None
        gtau = None
        if impl != "torch":
            s2 = saved.reshape(T, -1)
            out2 = s2 if out is not None else None
            neuron = (th, tau, hard, reset_grad, v0, want_dtau)
            gx, gv0, gtau = fused_backward(impl, gs, gu, gl, s2, neuron, sg, dtype, radius, out2)
            gx = gx.reshape(x_shape)
        else:
            gx, gv0 = torch_backward(gs, gu, gl, saved, th.bcast, tau.bcast, hard, reset_grad, sg, out=out)
        g_v0 = g_tau = None
        if ctx.needs_input_grad[1] and v0 is not None:
            g_full = gv0.reshape(-1) if impl != "torch" else gv0.expand(sample_shape).reshape(-1)
            g_v0 = reduce_to_param(g_full, v0, sample_shape)
        if gtau is not None:
            g_tau = reduce_to_param(gtau, tau, sample_shape).to(tau.bcast.dtype)
        return gx, g_v0, g_tau, *(None,) * 9


def selected_backend(
    x: torch.Tensor, surrogate: str | _surrogate.Surrogate = "inflor", backend: str = "auto", features=()
) -> str:
    """The implementation that :func:`lif_multistep` runs for a tensor like ``x`` with this
    surrogate and ``backend``: ``"cpu"`` (numba), ``"triton"`` or ``"torch"`` (e.g. to log it)."""
    sg = _surrogate.get(surrogate)
    return select_kernel(
        "lif", x, backend=backend, features=features, kernel_surrogate=sg.kernel_id is not None
    )


def _learnable(p) -> bool:
    return torch.is_tensor(p) and p.requires_grad and torch.is_grad_enabled()


def _multistep(fn, x, params, defaults, need_membrane, backend, membrane_storage, neuron):
    tau, v_th, reset, sg, v_init, detach_reset = neuron_args(fn, params, defaults, neuron)
    check_input(x, fn)
    sample_shape = x.shape[1:]
    th = as_param(v_th, sample_shape, "v_th", x)
    check_threshold(th.flat)
    taup = as_param(tau, sample_shape, "tau", x)
    v0 = None
    if isinstance(v_init, str):  # "half"
        v0 = Param(th.bcast * 0.5, th.flat * 0.5, th.stride)
    elif v_init is not None:
        if torch.is_tensor(v_init):
            check_finite(v_init, fn, "v_init")
        v0 = as_param(v_init, sample_shape, "v_init", x)
    learn_tau, learn_th = _learnable(tau), _learnable(v_th)
    features = {"tau_tensor"} if taup.flat.numel() > 1 else set()
    features |= {"tau_grad"} if learn_tau else set()
    features |= {"v_th_grad"} if learn_th else set()
    impl = select_kernel(
        "lif", x, backend=backend, features=features, kernel_surrogate=sg.kernel_id is not None
    )
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
    if impl == "torch" and (learn_tau or learn_th):
        # no kernel for this gradient here: autograd through the reference step (the ground truth)
        p = {"tau": taup.bcast, "v_th": th.bcast, "reset": reset}
        state0 = (v0.bcast,) if v0 is not None else None
        spikes, upre, (ulast,) = run_reference(
            LIF_SPEC, x, p, state0, Firing(sg, detach_reset), need_membrane=need_membrane
        )
        return spikes, upre, ulast

    v0_tensor = v_init if torch.is_tensor(v_init) else None
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or learn_tau or (v0_tensor is not None and v0_tensor.requires_grad)
    )
    if needs_grad:
        # the user's tensors are inputs so that autograd routes their gradients (v0/tau.bcast are
        # differentiable views of them)
        v0_in = v0.bcast if v0_tensor is not None else torch.empty(0)
        tau_in = taup.bcast if learn_tau else torch.empty(0)
        return _LIFFunction.apply(
            x, v0_in, tau_in, v0, th, taup, hard, detach_reset, sg, impl, need_membrane, compact
        )

    # inference (or nothing requires grad): no autograd graph, u_pre stored only if asked
    with torch.no_grad():
        if impl != "torch":
            spikes, upre, _, ulast = fused_forward(impl, x, v0, th, taup, hard, need_upre=need_membrane)
        else:
            v0b = v0.bcast if v0 is not None else None
            spikes, upre, ulast = torch_forward(x, v0b, th.bcast, taup.bcast, hard, need_upre=need_membrane)
    return spikes, upre, ulast


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
    return _multistep(
        "lif_multistep", x, params, LIF_PARAMS, need_membrane, backend, membrane_storage, neuron
    )


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
    spikes, upre, _ = _multistep(
        "lif_multistep", x, params, LIF_PARAMS, return_membrane, backend, membrane_storage, neuron
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
    spikes, upre, _ = _multistep(
        "if_multistep", x, params, IF_PARAMS, return_membrane, backend, membrane_storage, neuron
    )
    return (spikes, upre) if return_membrane else spikes


@torch.no_grad()
def signed_if_multistep(
    x: torch.Tensor,
    v_th: float | torch.Tensor = 1.0,
    *,
    v_init: torch.Tensor | float = 0.0,
    count_init: torch.Tensor | None = None,
    return_membrane: bool = False,
    backend: str = "auto",
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
    ``backend``: as for :func:`lif_multistep` -- a fused kernel where one is registered for
    ``"signed_if"`` and this tensor (float32 CPU: numba), else this PyTorch loop; both give the
    same bits.
    """
    fn = "signed_if_multistep"
    if x.ndim < 1 or x.shape[0] == 0:
        raise InputError(f"{fn}: x must be [T, ...] with T >= 1, got {tuple(x.shape)}")
    check_finite(x, fn)
    for name, value in (("v_th", v_th), ("v_init", v_init)):
        if torch.is_tensor(value):
            check_finite(value, fn, name)
        elif not math.isfinite(float(value)):
            raise InputError(f"{fn}: {name} must be finite, got {value}")
    th = torch.as_tensor(v_th, dtype=x.dtype, device=x.device)
    v = torch.as_tensor(v_init, dtype=x.dtype, device=x.device).expand(x.shape[1:]).clone()
    n = torch.zeros_like(v) if count_init is None else count_init.to(v.dtype).expand_as(v).clone()
    if select_kernel("signed_if", x, backend=backend, fn=fn) == "cpu":
        return _signed_if_cpu(x, th, v, n, return_membrane)
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


def _signed_if_cpu(x, th, v, n, return_membrane: bool) -> tuple[torch.Tensor, ...]:
    """:func:`signed_if_multistep` by the fused numba kernel (``v`` and ``n`` are updated in place)."""
    k = cpu_kernels()
    x2 = x.detach().reshape(x.shape[0], -1).contiguous()
    thp = as_param(th, x.shape[1:], "v_th", x)
    v, n = v.contiguous(), n.contiguous()
    spikes = torch.empty_like(x2)
    upre = torch.empty_like(x2) if return_membrane else torch.empty((1, 1), dtype=x.dtype)
    run_kernel(
        k.signed_if_forward,
        x2.numpy(),
        thp.flat.numpy(),
        thp.stride,
        v.view(-1).numpy(),
        n.view(-1).numpy(),
        spikes.numpy(),
        upre.numpy(),
        int(return_membrane),
    )
    spikes = spikes.view(x.shape)
    return (spikes, v, n, upre.view(x.shape)) if return_membrane else (spikes, v, n)
