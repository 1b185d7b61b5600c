"""The runtime of the fused CPU kernels (``_cpu_kernels``, numba): loading them once, knowing
whether they can run here, and calling them safely.  The neuron dynamics and RMP-Loss both use
this public surface instead of each other's private names."""

from __future__ import annotations

import threading

import torch

__all__ = ["cpu_kernels", "numba_available", "run_kernel"]

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
