"""Refuse what cannot fit before allocating it: a number of time steps, a decoded image or an
archive entry whose size would exhaust this machine's memory.  The errors name the number and
how to lower it.  Like :mod:`rmpsnn.io`, this module sits below everything else."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

from .errors import InputError, one_line

__all__ = [
    "MAX_IMAGE_PIXELS",
    "Probe",
    "available_memory",
    "check_memory",
    "check_simulation",
    "check_timesteps",
    "gib",
    "probe_model",
    "whole_steps",
]

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


def whole_steps(value, *, what: str, error: type[Exception] = InputError) -> int:
    """``value`` as an int >= 1 -- a whole number of time steps (not a bool, not 2.0), else one
    line naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise error(f"{what}: the number of time steps must be a whole number >= 1, got {value!r}")
    return int(value)


def check_timesteps(
    timesteps,
    elements_per_step: int,
    *,
    what: str,
    error: type[Exception] = InputError,
    bytes_per_element: int = 4,
    lower: str = "lower the number of time steps (or the batch size)",
) -> int:
    """``timesteps`` as an int >= 1 (:func:`whole_steps`), refused (``error``) when
    ``timesteps * elements_per_step`` values of ``bytes_per_element`` bytes would not fit in memory."""
    timesteps = whole_steps(timesteps, what=what, error=error)
    check_memory(
        float(timesteps) * max(int(elements_per_step), 1) * bytes_per_element,
        what=f"{what} with {timesteps} time steps",
        lower=lower,
        error=error,
    )
    return timesteps


@dataclass(frozen=True)
class Probe:
    """What one forward of one sample for one time step tells about a model: the number of values
    its leaf modules output (``total``, ``largest`` of one module) and its output's last
    dimension (``outputs``: the number of classes of a classifier)."""

    total: int
    largest: int
    outputs: int


def probe_model(model, input_shape, *, time_major: bool = False, what: str = "the model") -> Probe:
    """Run ``model`` once on a zero input of ``input_shape`` (C, H, W) at T = 1 (batch 1, eval
    mode, random-number state untouched).  A model that cannot take that input raises
    :class:`InputError` here, before any training or evaluation."""
    import torch

    sizes: list[int] = []

    def hook(_m, _inputs, out):
        if torch.is_tensor(out):
            sizes.append(out.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sample = torch.zeros((1, 1, *input_shape) if time_major else (1, *input_shape), device=device)
    # one step is enough to see every activation's size: a network that follows the time
    # convention (forward(x, timesteps=None)) is called for T = 1; another one runs its own T,
    # and its activations, [T, B, ...], are counted per step
    one_step = {} if time_major or not _takes_timesteps(model) else {"timesteps": 1}
    steps = 1 if one_step or time_major else max(int(getattr(model, "timesteps", 1) or 1), 1)
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(sample, **one_step)
    except (RuntimeError, ValueError, IndexError) as e:
        detail = one_line(e)
        raise InputError(
            f"{what} cannot take inputs of shape {list(input_shape)} (C, H, W): {detail}; use images of the "
            f"size the model was built for"
        ) from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    outputs = out.shape[-1] if torch.is_tensor(out) and out.ndim else 0
    return Probe(-(-sum(sizes) // steps), -(-max(sizes, default=0) // steps), int(outputs))


def _takes_timesteps(model) -> bool:
    import inspect

    try:
        return "timesteps" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def check_simulation(
    model,
    input_shape,
    *,
    timesteps,
    batch_size: int,
    training: bool,
    what: str,
    lower: str,
    time_major: bool = False,
    error: type[Exception] = InputError,
) -> None:
    """Refuse a run of ``model`` for ``timesteps`` steps on batches of ``batch_size`` whose
    activations cannot fit in memory: training keeps every layer's ``[T, B, ...]`` output for the
    backward pass (about 3 values per output: value, surrogate input, gradient); evaluation holds
    a few layers at a time."""
    probe = probe_model(model, input_shape, time_major=time_major, what=what)
    per_step = (3 * probe.total if training else 4 * probe.largest) * max(int(batch_size), 1)
    check_timesteps(timesteps, per_step, what=what, error=error, lower=lower)
