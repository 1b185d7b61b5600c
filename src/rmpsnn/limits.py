"""Refuse what cannot fit before allocating it: a number of time steps, a decoded image or an
archive entry whose size would exhaust this machine's memory.  The errors name the number and
how to lower it.  Like :mod:`rmpsnn.io`, this module sits below everything else."""

from __future__ import annotations

import numbers
import os

from .errors import InputError

__all__ = ["MAX_IMAGE_PIXELS", "available_memory", "check_memory", "check_timesteps", "gib"]

# a decoded image larger than this (pixels per image) is refused: 8192 x 8192, 200 MB as RGB
MAX_IMAGE_PIXELS = 8192 * 8192
# the share of the available memory one allocation may take
_SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux, else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(nbytes: float, *, what: str, lower: str, error: type[Exception] = InputError) -> None:
    """Raise ``error`` when ``nbytes`` would not fit in the memory available now."""
    budget = _SHARE * available_memory()
    if nbytes > budget:
        raise error(
            f"{what} needs about {gib(nbytes)} of memory, more than the {gib(budget)} available; {lower}"
        )


def check_timesteps(
    timesteps,
    elements_per_step: int,
    *,
    what: str,
    error: type[Exception] = InputError,
    bytes_per_element: int = 4,
    lower: str = "lower the number of time steps (or the batch size)",
) -> int:
    """``timesteps`` as an int >= 1, refused (``error``) when ``timesteps * elements_per_step``
    values of ``bytes_per_element`` bytes would not fit in memory."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or timesteps < 1:
        raise error(f"{what}: the number of time steps must be a whole number >= 1, got {timesteps!r}")
    timesteps = int(timesteps)
    check_memory(
        float(timesteps) * max(int(elements_per_step), 1) * bytes_per_element,
        what=f"{what} with {timesteps} time steps",
        lower=lower,
        error=error,
    )
    return timesteps
