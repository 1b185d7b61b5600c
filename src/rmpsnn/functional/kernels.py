"""The runtime of the fused kernels -- CPU (``_cpu_kernels``, numba) and CUDA (``_triton_kernels``,
Triton): loading them once, knowing whether they can run here, and calling them safely.  The
neuron dynamics and RMP-Loss both use this public surface instead of each other's private names."""

from __future__ import annotations

import importlib.util
import os
import threading

import torch

from ..errors import InputError

__all__ = [
    "TRITON_DTYPES",
    "cpu_kernels",
    "device_kernel",
    "numba_available",
    "run_kernel",
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


def device_kernel(t: torch.Tensor) -> str:
    """The fused kernel for a tensor like ``t`` when one applies (the rule of ``backend="auto"``):
    ``"cpu"`` (numba) for float32 CPU tensors, ``"triton"`` for float32/float16/bfloat16 CUDA
    tensors when triton is installed; otherwise ``"torch"``."""
    if t.device.type == "cpu":
        return "cpu" if t.dtype == torch.float32 and numba_available() else "torch"
    if t.device.type == "cuda":
        return "triton" if t.dtype in TRITON_DTYPES and triton_available() else "torch"
    return "torch"
