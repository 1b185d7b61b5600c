"""The fused kernels as accelerators -- CPU (``_cpu_kernels``, numba) and CUDA (``_triton_kernels``,
Triton): loading them once, knowing whether they can run here, calling them safely, and choosing
one.  Each kernel registers in :data:`KERNELS` for a (kind, implementation) pair with the device,
dtypes and features it covers; :func:`select_kernel` is the one choice, used by the neurons and
by RMP-Loss alike.  When no kernel covers a combination, the reference (PyTorch) path runs.

Features a neuron call may need: ``"tau_tensor"`` (a per-channel/per-neuron leak),
``"tau_grad"`` (the leak's gradient, reduced over time in the backward), ``"v_th_grad"`` (the
threshold's gradient; no kernel has it, so a learnable threshold runs the reference step)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading
from collections.abc import Callable

import torch

from ..errors import InputError
from ..registry import Registry

__all__ = [
    "BACKENDS",
    "KERNELS",
    "TRITON_DTYPES",
    "KernelInfo",
    "cpu_kernels",
    "numba_available",
    "run_kernel",
    "select_kernel",
    "triton_available",
    "triton_interpreting",
    "triton_kernels",
    "triton_runs_on",
]

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the Triton kernels take

_lock = threading.Lock()  # numba's workqueue threading layer must not be entered concurrently
_kernels = None
_numba_ok: bool | None = None


def cpu_kernels():
    """The compiled kernel module (compiled on first use, ~5 s once per machine, then cached)."""
    global _kernels
    if _kernels is None:
        from . import _cpu_kernels

        _kernels = _cpu_kernels
    return _kernels


@torch.compiler.assume_constant_result  # a fact of the machine: no guard, no graph break
def numba_available() -> bool:
    """Whether the fused kernels load here (numba installed and working); checked once."""
    global _numba_ok
    if _numba_ok is None:
        try:
            cpu_kernels()
            _numba_ok = True
        except Exception:  # pragma: no cover - numba missing or broken: fall back quietly
            _numba_ok = False
    return _numba_ok


def run_kernel(fn, *args) -> None:
    """Call kernel ``fn`` with as many threads as torch uses (one call at a time)."""
    import numba

    with _lock:
        threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        if numba.get_num_threads() != threads:
            numba.set_num_threads(threads)
        fn(*args)


# --------------------------------------------------------------------------- Triton (CUDA)
_triton = None
_triton_ok: bool | None = None


def triton_interpreting() -> bool:
    """``TRITON_INTERPRET=1``: Triton's interpreter runs the kernels on CPU tensors (for tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@torch.compiler.assume_constant_result
def triton_available() -> bool:
    """Whether Triton is installed and imports here (checked once; the kernels themselves load on
    first use, so that ``TRITON_INTERPRET`` may still be set until then)."""
    global _triton_ok
    if _triton_ok is None:
        if importlib.util.find_spec("triton") is None:
            _triton_ok = False
        else:
            try:
                import triton  # noqa: F401

                _triton_ok = True
            except Exception:  # pragma: no cover - a broken triton install: fall back quietly
                _triton_ok = False
    return _triton_ok


def triton_kernels():
    """The Triton kernel module (imported on first use).  Triton picks compiled or interpreted
    kernels when they are defined, so the mode is fixed by the first call."""
    global _triton
    if _triton is None:
        from . import _triton_kernels

        _triton = (_triton_kernels, triton_interpreting())
    module, interpreted = _triton
    if interpreted != triton_interpreting():
        raise InputError(
            f"the Triton kernels were loaded {'with' if interpreted else 'without'} TRITON_INTERPRET=1 "
            f"and it is now {'unset' if interpreted else 'set'}; set (or unset) it before the first "
            f"Triton call of the process"
        )
    return module


def triton_runs_on(t: torch.Tensor) -> bool:
    """Whether the Triton kernels can run on ``t``: a CUDA tensor, or a CPU tensor under the
    interpreter."""
    return t.device.type == "cuda" or (t.device.type == "cpu" and triton_interpreting())


# --------------------------------------------------------------------------- registry and choice
BACKENDS = ("auto", "cpu", "torch", "triton")


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """What one fused kernel covers: the tensors it runs on and the features it implements."""

    # "lif" (the LIF/IF recurrence, also PLIF and learnable-tau LIF), "rmp" (RMP-Loss) or
    # "signed_if" (the signed IF neurons of converted networks, inference only)
    kind: str
    impl: str  # "cpu" or "triton": the name a ``backend=`` argument gives
    auto_devices: tuple[str, ...]  # devices where backend="auto" picks it
    dtypes: tuple[torch.dtype, ...]
    features: frozenset[str]
    available: Callable[[], bool]
    runs_on: Callable[[torch.Tensor], bool]  # where an explicit backend= may run it


KERNELS: Registry[KernelInfo] = Registry("kernel")
_ALL_LIF = frozenset({"tau_tensor", "tau_grad"})
for _kind, _features in (("lif", _ALL_LIF), ("rmp", frozenset())):  # rmp: one scalar threshold
    KERNELS.register(
        f"{_kind}/cpu",
        KernelInfo(_kind, "cpu", ("cpu",), (torch.float32,), _features, numba_available,
                   lambda t: t.device.type == "cpu"),
        help=f"fused numba kernel ({_kind}), float32 CPU tensors",
    )  # fmt: skip
    KERNELS.register(
        f"{_kind}/triton",
        KernelInfo(_kind, "triton", ("cuda",), TRITON_DTYPES, _features, triton_available, triton_runs_on),
        help=f"fused Triton kernel ({_kind}), CUDA tensors (CPU under TRITON_INTERPRET=1)",
    )


KERNELS.register(
    "signed_if/cpu",
    KernelInfo("signed_if", "cpu", ("cpu",), (torch.float32,), frozenset(), numba_available,
               lambda t: t.device.type == "cpu"),
    help="fused numba kernel (signed IF neurons of converted networks, inference), float32 CPU tensors",
)  # fmt: skip


def _refusal(
    info: KernelInfo, t: torch.Tensor, needs: frozenset, kernel_surrogate: bool, fn: str
) -> str | None:
    """Why ``backend=info.impl`` cannot run here (``None``: it can)."""
    name = f"{fn}(backend={info.impl!r})" if fn != "neuron" else f"backend={info.impl!r}"
    if info.impl == "cpu":
        if not (
            t.device.type == "cpu" and t.dtype == torch.float32 and kernel_surrogate and info.available()
        ):
            return (
                f"{name} (fused kernel) needs a float32 CPU tensor and a built-in surrogate; "
                f"got {t.dtype} on {t.device}. Use backend='torch' or 'auto'."
            )
    else:
        if not info.available():
            return (
                f"{name} needs the triton package (pip install triton; it comes with CUDA "
                f"builds of torch); use backend='auto' or 'torch'"
            )
        if not info.runs_on(t):
            return (
                f"{name} runs on CUDA tensors; got a tensor on {t.device}. On CPU it runs only under "
                f"Triton's interpreter (TRITON_INTERPRET=1, for testing); use backend='auto' (the fused "
                f"CPU kernel) or 'torch' there"
            )
        if t.dtype not in info.dtypes:
            return f"{name} takes float32, float16 or bfloat16 input, got {t.dtype}; use backend='torch'"
        if not kernel_surrogate:
            return (
                f"{name} runs the built-in surrogates; this surrogate has no kernel, so use "
                f"backend='torch' (or 'auto') for it"
            )
    missing = needs - info.features
    if missing:
        return f"{name} has no kernel for {', '.join(sorted(missing))}; use backend='auto' or 'torch'"
    return None


def select_kernel(
    kind: str,
    t: torch.Tensor,
    *,
    backend: str = "auto",
    features=(),
    kernel_surrogate: bool = True,
    fn: str = "neuron",
) -> str:
    """The implementation that runs ``kind`` on tensors like ``t``: ``"cpu"``, ``"triton"`` or
    ``"torch"`` (the reference path).  ``backend="auto"`` (or the ``RMPSNN_BACKEND`` variable)
    takes the first registered kernel of the tensor's device that covers ``features`` and the
    surrogate (``kernel_surrogate``: it has a kernel id), else ``"torch"``; an explicit backend
    that cannot run raises an :class:`InputError` saying why."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid values: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = os.environ.get("RMPSNN_BACKEND", "auto")
    if backend == "torch":
        return "torch"
    needs = frozenset(features)
    candidates = [e.obj for e in KERNELS.entries() if e.obj.kind == kind]
    if backend != "auto":
        for info in candidates:
            if info.impl == backend:
                why = _refusal(info, t, needs, kernel_surrogate, fn)
                if why:
                    raise InputError(why)
                return info.impl
        raise InputError(f"no {backend!r} kernel is registered for {kind!r}; use backend='auto' or 'torch'")
    # torch.export: the reference loop, so that an exported graph holds only aten ops and runs
    # anywhere (torch.compile keeps the fused kernels, as custom ops)
    if torch.compiler.is_exporting() or not kernel_surrogate:
        return "torch"
    for info in candidates:
        if (
            t.device.type in info.auto_devices
            and t.dtype in info.dtypes
            and needs <= info.features
            and info.available()
        ):
            return info.impl
    return "torch"
