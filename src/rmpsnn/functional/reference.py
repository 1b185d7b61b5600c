"""The reference implementation of neuron dynamics: plain PyTorch over time-major ``[T, B, ...]``.

* :class:`NeuronSpec` -- a neuron kind: its parameters, its state variables and one pure,
  differentiable step (charge, fire through a surrogate, reset).  :func:`run_reference` loops it
  over time under autograd, which makes it the ground truth for every gradient, learnable
  parameters included.  A new neuron kind is a spec plus a module (see docs/neurons.md).
* :func:`lif_step` -- the LIF/IF step (RMP-Loss eq. 1-3), the spec of ``"lif"``.
* :func:`torch_forward` / :func:`torch_backward` -- the same LIF recurrence with a hand-written
  BPTT that keeps only ``u_pre`` (the memory-lean ``backend="torch"`` of constant parameters);
  tested against :func:`run_reference`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

__all__ = ["LIF_SPEC", "Firing", "NeuronSpec", "lif_step", "run_reference", "torch_backward", "torch_forward"]


class Firing:
    """What a step uses to fire: ``spike(u_pre, v_th)`` is ``H(u_pre - v_th)`` forward and the
    surrogate ``φ'`` backward; it returns ``(o, o_reset)``, ``o_reset`` being ``o`` detached when
    the reset is not back-propagated (``detach_reset``)."""

    def __init__(self, surrogate, detach_reset: bool = False):
        self.surrogate = surrogate
        self.detach_reset = detach_reset

    def spike(self, u_pre: torch.Tensor, v_th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.surrogate(u_pre - v_th)
        return o, (o.detach() if self.detach_reset else o)


@dataclasses.dataclass(frozen=True)
class NeuronSpec:
    """A neuron kind.

    Attributes:
        name: the kind's name (kernels register for it, see :func:`rmpsnn.functional.kernels.select_kernel`).
        params: names of the parameters ``step`` reads from its ``p`` dict (tensors broadcastable
            to one time step ``[B, ...]``, possibly ``nn.Parameter``), plus options such as ``reset``.
        states: names of the state variables; ``states[0]`` is the membrane potential.
        step: ``step(x_t, state, p, fire) -> (spike, u_pre, new_state)``, pure PyTorch, with
            ``state`` a tuple in the order of ``states`` and ``fire`` a :class:`Firing`.
        threshold: the parameter that is the firing threshold (what RMP-Loss measures against).
    """

    name: str
    params: tuple[str, ...]
    states: tuple[str, ...]
    step: Callable
    threshold: str = "v_th"


def run_reference(
    spec: NeuronSpec,
    x: torch.Tensor,
    p: dict,
    state: tuple[torch.Tensor, ...] | None,
    fire: Firing,
    *,
    need_membrane: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...]]:
    """Loop ``spec.step`` over the T steps of ``x`` under autograd: ``(spikes, u_pre or None,
    final state)``; every state starts at 0 unless ``state`` is given (entries may be ``None``)."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    state = tuple(zero if s is None else s for s in (state or (None,) * len(spec.states)))
    spikes, upres = [], []
    for t in range(x.shape[0]):
        o, u_pre, state = spec.step(x[t], state, p, fire)
        spikes.append(o)
        if need_membrane:
            upres.append(u_pre)
    state = tuple(s.expand(x.shape[1:]) if s.shape != x.shape[1:] else s for s in state)
    return torch.stack(spikes), (torch.stack(upres) if need_membrane else None), state


def lif_step(x_t, state, p, fire):
    """``u_pre = tau u + x``; ``o = H(u_pre - v_th)``; ``u = u_pre (1 - o)`` (hard) or
    ``u_pre - v_th o`` (soft)."""
    (u,) = state
    v = p["tau"] * u + x_t
    o, o_r = fire.spike(v, p["v_th"])
    u = v * (1 - o_r) if p["reset"] == "hard" else v - p["v_th"] * o_r
    return o, v, (u,)


LIF_SPEC = NeuronSpec("lif", ("tau", "v_th", "reset"), ("u",), lif_step)


def torch_forward(x, v0, th, tau, hard, need_upre):
    """The LIF loop without an autograd graph (backward is :func:`torch_backward`)."""
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


def torch_backward(gs, gu, gl, upre, th, tau, hard, reset_grad, sg, out=None):
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
