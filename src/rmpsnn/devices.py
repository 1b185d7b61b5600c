"""One place that turns a device name typed by a user into a ``torch.device`` -- or into one
line saying what is available here and which option to change."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["available_devices", "resolve_device"]


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
    against this machine.  ``option`` is what the user typed (``--device``, ``run.device``) so
    that the error names it: ``--device='cuda': CUDA is not available here ...; available: cpu``."""
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
            f"{where} is not a device name; available here: {', '.join(avail)} (or auto)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU was found"
            raise InputError(f"{where}: CUDA is not available here ({why}); available: {', '.join(avail)}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"{where}: there are {torch.cuda.device_count()} GPUs; available: {', '.join(avail)}"
            )
    elif dev.type != "cpu":
        backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
        usable = getattr(backend, "is_available", None)
        if usable is None or not usable():
            raise InputError(f"{where}: {dev.type} is not available here; available: {', '.join(avail)}")
    return dev
