"""One place that turns a device name typed by a user into a ``torch.device`` -- or into one
line saying what is available here and which option to change."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["available_devices", "resolve_device", "tune_cpu_allocator"]


def available_devices() -> list[str]:
    """Device names usable on this machine, e.g. ``["cpu", "cuda", "cuda:0", "cuda:1"]``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(requested: str | torch.device | None, option: str = "device") -> torch.device:
    """``"auto"``/``None`` -> CUDA if present, else MPS, else CPU; any other name is checked
    against this machine.  The library's entry points call it once, with ``option`` the key the
    value came from (``run.device``, ``device``), which the error names and carries
    (:attr:`~rmpsnn.errors.RmpsnnError.key`, so that the command names ``--device`` when that
    is what was typed): ``run.device='cuda': CUDA is not available here ...; available: cpu``."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    if requested in (None, "", "auto"):
        avail = available_devices()
        return torch.device("cuda" if "cuda" in avail else "mps" if "mps" in avail else "cpu")
    avail = available_devices()
    where = f"{option}={requested!r}"
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            f"{where} is not a device name; available here: {', '.join(avail)} (or auto)", key=option
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU was found"
            raise InputError(
                f"{where}: CUDA is not available here ({why}); available: {', '.join(avail)}", key=option
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"{where}: there are {torch.cuda.device_count()} GPUs; available: {', '.join(avail)}",
                key=option,
            )
    elif dev.type != "cpu":
        backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
        usable = getattr(backend, "is_available", None)
        if usable is None or not usable():
            raise InputError(
                f"{where}: {dev.type} is not available here; available: {', '.join(avail)}", key=option
            )
    return dev


# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ALLOCATOR_BYTES = 1 << 30


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process for reuse instead of returning it to the system
    (glibc only; what the ``rmpsnn`` command does at start, unless ``RMPSNN_MALLOC_TUNING=0``).

    By default glibc serves every allocation above a threshold (adapting up to 32 MiB) with a
    fresh ``mmap`` and unmaps it when freed, so a CPU training step or simulation chunk whose
    activations are that large page-faults all of them in again at every step: on 2 cores the
    quickstart's direct training spent about 30 % of its time in the kernel doing so.  Raising the
    mmap and trim thresholds to 1 GiB lets the heap reuse the memory (the same thing PyTorch's
    CPU tuning guide gets by preloading jemalloc or tcmalloc).  The cost: up to 1 GiB freed after
    a peak stays mapped to the process.  Returns whether the thresholds were set."""
    import ctypes
    import os
    import sys

    if os.environ.get("RMPSNN_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt  # glibc (musl has no mallopt)
        libc.gnu_get_libc_version  # noqa: B018 -- and only glibc's thresholds mean this
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _ALLOCATOR_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _ALLOCATOR_BYTES)
    )
