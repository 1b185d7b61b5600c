"""RMP-Loss (Guo et al., "RMP-Loss: Regularizing Membrane Potential Distribution for Spiking
Neural Networks", ICCV 2023), its schedule, and the quantisation error it reduces.

A spiking neuron quantises its pre-spike potential ``u`` to a spike ``o ∈ {0, 1}``; the
quantisation error is the distance between them (eq. 8)::

    Dis(o, u) = 1 - u    if u >= v_th   (the neuron fires: o = 1)
    Dis(o, u) = 0 - u    otherwise      (o = 0)

RMP-Loss pulls every pre-spike potential toward the spike it becomes::

    q(u) = |Dis(o, u)|^p                                   (eq. 9, p = 2)
    L_RMP = mean over time, layers, batch and neurons of q   (eq. 10)
    L = L_CE + λ(n) · L_RMP                                   (eq. 11)
    λ(n) = 2k·n/N for n <= N/2, else 2k(1 - n/N)              (eq. 12, rise then fall)

Use :class:`rmpsnn.neurons.MembraneRecorder` to collect the membranes of a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError
from .functional.kernels import (
    TRITON_DTYPES,
    cpu_kernels,
    device_kernel,
    numba_available,
    run_kernel,
    triton_available,
    triton_kernels,
    triton_runs_on,
)
from .functional.neuron import is_tracing

__all__ = ["QuantizationErrorMeter", "quantization_distance", "quantization_error", "rmp_lambda", "rmp_loss"]

REDUCTIONS = ("element", "layer")


def quantization_distance(u: torch.Tensor, v_th: float | torch.Tensor = 0.5) -> torch.Tensor:
    """``Dis(o, u)`` of eq. 8: ``1 - u`` where ``u >= v_th``, else ``-u`` (elementwise; a tensor
    ``v_th`` broadcasts against ``u``, e.g. ``[C, 1, 1]`` per channel)."""
    return torch.where(u >= v_th, 1 - u, -u)


def _check_membranes(membranes) -> list[torch.Tensor]:
    if torch.is_tensor(membranes):
        membranes = [membranes]
    membranes = list(membranes)
    if not membranes:
        raise InputError(
            "rmp_loss got no membrane potentials: record them with MembraneRecorder(model) around the "
            "forward pass (the model must contain LIF/IF layers)"
        )
    return membranes


def _pow_mode(p: float) -> int:
    return 2 if p == 2 else (1 if p == 1 else 0)


RMP_BACKENDS = ("auto", "cpu", "triton", "torch")


def _rmp_impl(u: torch.Tensor, backend: str) -> str:
    """Which implementation sums ``|Dis(u)|^p``; ``"auto"``: the fused kernel of the device."""
    if backend == "torch" or is_tracing(u):
        return "torch"
    if backend == "auto":
        return device_kernel(u)
    if backend == "cpu":
        if u.device.type != "cpu" or u.dtype != torch.float32 or not numba_available():
            raise InputError(
                f"rmp_loss(backend='cpu') needs float32 CPU membranes and numba; got {u.dtype} on "
                f"{u.device}; use backend='auto'"
            )
        return "cpu"
    if not (triton_available() and triton_runs_on(u) and u.dtype in TRITON_DTYPES):
        raise InputError(
            f"rmp_loss(backend='triton') needs the triton package and float32/float16/bfloat16 CUDA "
            f"membranes (CPU ones only under TRITON_INTERPRET=1); got {u.dtype} on {u.device}; use "
            f"backend='auto'"
        )
    return "triton"


# --- contract 1 (minimal, trainer helper; the neurons helper's version wins at merge) -----------
def _per_membrane_thresholds(v_th, membranes: list[torch.Tensor]) -> list:
    """``v_th`` as one threshold per membrane: a float (or a tensor) applies to all of them, a
    list/tuple gives one per membrane (``MembraneRecorder.thresholds``).  A 0-d threshold becomes a
    float (the fused kernels take a scalar); a per-channel one stays a tensor broadcastable to its
    membrane (detached: ``Dis`` does not depend on ``v_th`` where it is differentiable)."""
    if isinstance(v_th, (list, tuple)):
        if len(v_th) != len(membranes):
            raise InputError(
                f"got {len(v_th)} thresholds for {len(membranes)} membranes; give one per membrane "
                f"(MembraneRecorder.thresholds) or a single float"
            )
        values = list(v_th)
    else:
        values = [v_th] * len(membranes)
    out = []
    for th in values:
        if torch.is_tensor(th):
            th = th.detach()
            out.append(float(th) if th.ndim == 0 else th)
        else:
            out.append(float(th))
    return out


def _impl_for(u: torch.Tensor, v_th, backend: str) -> str:
    """:func:`_rmp_impl`, except that a per-channel (tensor) threshold runs the PyTorch expression
    (the fused kernels take one scalar threshold)."""
    return "torch" if torch.is_tensor(v_th) else _rmp_impl(u, backend)


def _dis_power_sum(u: torch.Tensor, v_th: float, p: float, impl: str) -> torch.Tensor:
    """``Σ |Dis(u)|^p`` as a float64 scalar on ``u``'s device; a fused pass that allocates nothing
    per element on CPU (numba) and CUDA (Triton), and needs no host round trip off the CPU."""
    if impl == "cpu":
        flat = u.contiguous().reshape(-1)
        k = cpu_kernels()
        partial = np.zeros(max(1, -(-flat.numel() // k.BLOCK)), dtype=np.float64)
        run_kernel(k.rmp_forward, flat.numpy(), np.float32(v_th), np.float32(p), _pow_mode(p), partial)
        return torch.tensor(partial.sum(), dtype=torch.float64)
    if impl == "triton":
        flat = u.contiguous().reshape(-1)
        k = triton_kernels()
        grid = k.grid(flat.numel(), k.RMP_BLOCK)
        partial = torch.zeros(max(1, grid[0]), dtype=torch.float32, device=u.device)
        if flat.numel():
            k.rmp_forward_kernel[grid](
                flat, partial, flat.numel(), float(v_th), float(p), MODE=_pow_mode(p), BLOCK=k.RMP_BLOCK
            )
        return partial.sum(dtype=torch.float64)
    with torch.no_grad():
        d = quantization_distance(u, v_th)
        return d.abs().pow(p).sum(dtype=torch.float64)


class _RMPSum(torch.autograd.Function):
    """``Σ |Dis(u)|^p`` over all elements of ``u`` (eq. 8-9) without keeping intermediates: the
    backward recomputes ``Dis`` from ``u`` (which the spiking layer keeps anyway).  One fused pass
    each way on CPU float32 (numba) and on CUDA (Triton); elsewhere a short PyTorch expression.
    The sum comes out in float32 at least (a float16 sum over a layer would overflow)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, v_th: float, p: float, impl: str):
        ctx.save_for_backward(u)
        ctx.v_th, ctx.p, ctx.impl = v_th, p, impl
        return _dis_power_sum(u.detach(), v_th, p, impl).to(torch.promote_types(u.dtype, torch.float32))

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        if grad is None or not ctx.needs_input_grad[0]:
            return None, None, None, None
        if ctx.impl == "cpu":
            flat = u.detach().contiguous().reshape(-1)
            g = torch.empty_like(flat)
            k = cpu_kernels()
            run_kernel(
                k.rmp_backward,
                flat.numpy(),
                np.float32(ctx.v_th),
                np.float32(ctx.p),
                _pow_mode(ctx.p),
                np.float32(float(grad)),
                g.numpy(),
            )
            return g.view(u.shape), None, None, None
        if ctx.impl == "triton":
            flat = u.detach().contiguous().reshape(-1)
            g = torch.empty_like(flat)
            k = triton_kernels()
            if flat.numel():
                k.rmp_backward_kernel[k.grid(flat.numel(), k.RMP_BLOCK)](
                    flat,
                    grad.reshape(1),
                    g,
                    flat.numel(),
                    float(ctx.v_th),
                    float(ctx.p),
                    MODE=_pow_mode(ctx.p),
                    BLOCK=k.RMP_BLOCK,
                )
            return g.view(u.shape), None, None, None
        d = quantization_distance(u, ctx.v_th)
        gd = 2 * d if ctx.p == 2 else ctx.p * d.abs().pow(ctx.p - 1) * d.sign()
        return (-grad * gd).to(u.dtype), None, None, None


def rmp_loss(
    membranes: Sequence[torch.Tensor] | torch.Tensor,
    v_th: float | Sequence = 0.5,
    p: float = 2,
    reduction: str = "element",
    backend: str = "auto",
) -> torch.Tensor:
    """RMP-Loss (eq. 8-10) over the pre-spike potentials ``u_pre`` (``[T, B, ...]`` each) of the
    spiking layers.

    ``reduction="element"`` (default) is the mean of ``|Dis|^p`` over every element of every layer,
    so a layer weighs in proportion to its number of neurons -- eq. 10 read as one mean over time,
    layers, batch and neurons.  ``reduction="layer"`` averages the per-layer means instead, so
    every layer counts equally whatever its size.

    ``v_th``: one threshold for every membrane, or a sequence with one per membrane (floats or
    tensors broadcastable to it, e.g. ``MembraneRecorder.thresholds``).

    Computed by a fused function that keeps no intermediate tensors (the gradient is
    recomputed from ``u``): on a CPU (numba) or a CUDA device (Triton) it costs about one pass over
    the membranes each way instead of the ~10 of the plain autograd expression.  ``backend``:
    ``"auto"`` (the fused kernel of the membranes' device), ``"cpu"``, ``"triton"`` or ``"torch"``.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; valid values: {', '.join(REDUCTIONS)}")
    if p <= 0:
        raise InputError(f"rmp_loss needs p > 0, got {p}")
    if backend not in RMP_BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid values: {', '.join(RMP_BACKENDS)}")
    membranes = _check_membranes(membranes)
    thresholds = _per_membrane_thresholds(v_th, membranes)
    sums = [
        _RMPSum.apply(u, th, float(p), _impl_for(u, th, backend))
        for u, th in zip(membranes, thresholds, strict=True)
    ]
    if reduction == "layer":
        return torch.stack([s / u.numel() for s, u in zip(sums, membranes, strict=True)]).mean()
    total = sum(u.numel() for u in membranes)
    return sum(sums) / total


def rmp_lambda(epoch: int | float, total_epochs: int, k: float = 0.1) -> float:
    """λ(n) of eq. 12: rises linearly to ``k`` at mid-training, then falls back to 0.

    ``2k·n/N`` for ``n <= N/2``, else ``2k(1 - n/N)`` (``n`` = epoch, ``N`` = total epochs)."""
    if total_epochs <= 0:
        raise InputError(f"total_epochs must be > 0, got {total_epochs}")
    n = min(max(float(epoch), 0.0), float(total_epochs))
    r = n / total_epochs
    return 2 * k * r if r <= 0.5 else 2 * k * (1 - r)


def quantization_error(
    membranes: Sequence[torch.Tensor] | torch.Tensor, v_th: float | Sequence = 0.5
) -> dict:
    """Mean ``|Dis|`` and mean ``Dis²`` per layer and over all elements (the "quantization
    error" column of RMP-Loss Table 1), for one batch of recorded membranes (``v_th``: one
    threshold, or one per membrane)."""
    meter = QuantizationErrorMeter(v_th)
    meter.update(_check_membranes(membranes))
    return meter.compute()


class QuantizationErrorMeter:
    """Streaming quantisation error over a data set: call :meth:`update` with each batch's
    membranes (a list in layer order, or a ``{name: tensor}`` dict), then :meth:`compute`.

    ``v_th``: one threshold, or a sequence with one per membrane of each update (in its order);
    :meth:`update`'s ``v_th`` overrides it for that call (e.g. ``rec.thresholds``)."""

    def __init__(self, v_th: float | Sequence = 0.5):
        self.v_th = v_th
        self.abs_sum: dict[str, float] = {}
        self.sq_sum: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def update(self, membranes, v_th: float | Sequence | None = None) -> None:
        items = list(membranes.items() if isinstance(membranes, dict) else enumerate(membranes))
        thresholds = _per_membrane_thresholds(self.v_th if v_th is None else v_th, [u for _, u in items])
        for (name, u), th in zip(items, thresholds, strict=True):
            u = u.detach()
            key = str(name)  # streamed: two reductions, no copies of the layer's membranes
            impl = _impl_for(u, th, "auto")
            self.abs_sum[key] = self.abs_sum.get(key, 0.0) + float(_dis_power_sum(u, th, 1.0, impl))
            self.sq_sum[key] = self.sq_sum.get(key, 0.0) + float(_dis_power_sum(u, th, 2.0, impl))
            self.count[key] = self.count.get(key, 0) + u.numel()

    def compute(self) -> dict:
        n = sum(self.count.values())
        if n == 0:
            raise InputError("QuantizationErrorMeter: nothing recorded yet")
        return {
            "mean_abs": sum(self.abs_sum.values()) / n,
            "mean_sq": sum(self.sq_sum.values()) / n,
            "per_layer": {
                k: {"mean_abs": self.abs_sum[k] / c, "mean_sq": self.sq_sum[k] / c}
                for k, c in self.count.items()
            },
        }
