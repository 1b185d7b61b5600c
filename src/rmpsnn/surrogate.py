"""Surrogate gradients for the non-differentiable spike function.

A spiking neuron fires ``o = H(u - v_th)`` where ``H`` is the Heaviside step.  Its derivative
is zero almost everywhere, so training replaces it in the backward pass by the derivative
``φ'(z)`` of a smooth step ``φ``, evaluated at the distance to threshold ``z = u - v_th``.

Every surrogate here is a function of ``z`` (so it is *centred on the threshold*, whatever
``v_th`` is) with a sharpness/width parameter.  Look one up by name::

    >>> from rmpsnn import surrogate
    >>> sg = surrogate.get("inflor")            # RMP-Loss eq. 5
    >>> spikes = sg(u - 0.5)                    # Heaviside forward, φ' backward
    >>> surrogate.available()
    ('inflor', 'rectangle', 'sigmoid', 'atan', 'triangle', 'fast-sigmoid')

``InfLoR`` (Guo et al., "Reducing Information Loss for SNNs", ECCV 2022; RMP-Loss eq. 5) is
defined in the paper for ``v_th = 0.5`` on the membrane potential ``u``::

    φ(u) = 0                                         u < 0
    φ(u) = tanh(3 (u - 1/2)) / (2 tanh(3/2)) + 1/2   0 <= u <= 1
    φ(u) = 1                                         u > 1

Here it is written in ``z = u - v_th``, i.e. the window ``[0, 1]`` is *shifted* so that its
centre sits on the threshold: for ``v_th = 0.5`` it is exactly eq. 5, for another threshold
the window is ``[v_th - w/2, v_th + w/2]`` (``w = width``, 1 by default).  The window is not
rescaled with ``v_th``; pass ``width`` to do so.

Each surrogate also knows a small integer id and two parameters so that the fused CPU
kernels in :mod:`rmpsnn.functional` can evaluate it without calling back into Python; a
user-defined subclass without an id simply runs on the pure-PyTorch path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .errors import InputError
from .registry import Registry

__all__ = [
    "SURROGATES",
    "ATan",
    "FastSigmoid",
    "InfLoR",
    "Rectangle",
    "Sigmoid",
    "Surrogate",
    "Triangle",
    "available",
    "get",
    "register",
]


class _SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, ``grad * surrogate.grad(z)`` backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, sg: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.sg = sg
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        return grad * ctx.sg.grad(z), None


class Surrogate:
    """Base class: a smooth step ``φ(z)`` standing in for ``H(z)`` in the backward pass.

    Subclasses implement :meth:`grad` (``φ'(z)``) and :meth:`primitive` (``φ(z)``, up to a
    constant).  ``kernel_id``/``kernel_params`` let the fused kernels evaluate ``φ'``; leave
    ``kernel_id = None`` for a custom surrogate.
    """

    name: str = "surrogate"
    kernel_id: int | None = None

    @property
    def support_radius(self) -> float | None:
        """``h`` such that ``φ'(z) = 0`` for ``|z| > h``; ``None`` for infinite support.  Lets
        the fused kernel keep ``u_pre`` for backward as 16-bit codes inside the window."""
        return None

    def grad(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def primitive(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (0.0, 0.0)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Spike ``H(z)`` (``z = u - v_th``) with this surrogate gradient."""
        return _SpikeFunction.apply(z, self)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"surrogate parameter {name} must be a finite number > 0, got {value}")
    return value


class InfLoR(Surrogate):
    """InfLoR tanh surrogate (RMP-Loss eq. 5): ``φ'(z) = k/(2w·tanh(k/2)) · (1 - tanh²(k z / w))``
    for ``|z| <= w/2``, else 0.  ``k = 3, w = 1`` is the paper's function."""

    name = "inflor"
    kernel_id = 0

    def __init__(self, k: float = 3.0, width: float = 1.0):
        self.k = _positive("k", k)
        self.width = _positive("width", width)

    def grad(self, z):
        inside = (z.abs() <= self.width / 2).to(z.dtype)
        th = torch.tanh(self.k * z / self.width)
        return inside * (self.k / (2 * self.width * math.tanh(self.k / 2))) * (1 - th * th)

    def primitive(self, z):
        zc = z.clamp(-self.width / 2, self.width / 2)
        return torch.tanh(self.k * zc / self.width) / (2 * math.tanh(self.k / 2)) + 0.5

    @property
    def kernel_params(self):
        return (self.k, self.width)

    @property
    def support_radius(self):
        return self.width / 2


class Rectangle(Surrogate):
    """Rectangular (straight-through in a window) surrogate: ``φ'(z) = 1/w`` for ``|z| < w/2``."""

    name = "rectangle"
    kernel_id = 1

    def __init__(self, width: float = 1.0):
        self.width = _positive("width", width)

    def grad(self, z):
        return (z.abs() < self.width / 2).to(z.dtype) / self.width

    def primitive(self, z):
        return (z / self.width + 0.5).clamp(0, 1)

    @property
    def kernel_params(self):
        return (self.width, 0.0)

    @property
    def support_radius(self):
        return self.width / 2


class Sigmoid(Surrogate):
    """Sigmoid surrogate: ``φ(z) = σ(α z)``, ``φ'(z) = α σ(α z)(1 - σ(α z))``."""

    name = "sigmoid"
    kernel_id = 2

    def __init__(self, alpha: float = 4.0):
        self.alpha = _positive("alpha", alpha)

    def grad(self, z):
        s = torch.sigmoid(self.alpha * z)
        return self.alpha * s * (1 - s)

    def primitive(self, z):
        return torch.sigmoid(self.alpha * z)

    @property
    def kernel_params(self):
        return (self.alpha, 0.0)


class ATan(Surrogate):
    """Arctangent surrogate (SpikingJelly's convention):
    ``φ(z) = atan(π/2 · α z)/π + 1/2``, ``φ'(z) = (α/2) / (1 + (π/2 · α z)²)``."""

    name = "atan"
    kernel_id = 3

    def __init__(self, alpha: float = 2.0):
        self.alpha = _positive("alpha", alpha)

    def grad(self, z):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * z) ** 2)

    def primitive(self, z):
        return torch.atan(math.pi / 2 * self.alpha * z) / math.pi + 0.5

    @property
    def kernel_params(self):
        return (self.alpha, 0.0)


class Triangle(Surrogate):
    """Triangular surrogate: ``φ'(z) = max(0, 1 - |z|/w) / w`` (unit area)."""

    name = "triangle"
    kernel_id = 4

    def __init__(self, width: float = 1.0):
        self.width = _positive("width", width)

    def grad(self, z):
        return (1 - z.abs() / self.width).clamp(min=0) / self.width

    def primitive(self, z):
        w = self.width
        zc = z.clamp(-w, w)
        # antiderivative of the tent, 0 at z = -w and 1 at z = +w
        return 0.5 + zc / w - torch.sign(zc) * zc * zc / (2 * w * w)

    @property
    def kernel_params(self):
        return (self.width, 0.0)

    @property
    def support_radius(self):
        return self.width


class FastSigmoid(Surrogate):
    """Fast sigmoid (SuperSpike, Zenke & Ganguli 2018): ``φ'(z) = 1 / (1 + s|z|)²``,
    antiderivative ``z / (1 + s|z|)``.  Not unit-area: its integral is ``2/s``."""

    name = "fast-sigmoid"
    kernel_id = 5

    def __init__(self, slope: float = 10.0):
        self.slope = _positive("slope", slope)

    def grad(self, z):
        return 1.0 / (1 + self.slope * z.abs()) ** 2

    def primitive(self, z):
        return z / (1 + self.slope * z.abs())

    @property
    def kernel_params(self):
        return (self.slope, 0.0)


SURROGATES: Registry = Registry("surrogate")
for _cls, _aliases in (
    (InfLoR, ()),
    (Rectangle, ("rect",)),
    (Sigmoid, ()),
    (ATan, ("arctan",)),
    (Triangle, ()),
    (FastSigmoid, ("superspike", "fast_sigmoid")),
):
    SURROGATES.register(_cls.name, _cls, aliases=_aliases, kernel=_cls.kernel_id is not None)


def available() -> tuple[str, ...]:
    """Names accepted by :func:`get`."""
    return tuple(SURROGATES.names())


def register(name: str, factory: Callable[..., Surrogate] | None = None, *, replace: bool = False, **kwargs):
    """Add a surrogate under ``name`` (a :class:`Surrogate` subclass or factory; call or
    decorator).  A name already taken raises an ``InputError`` unless ``replace=True``."""
    return SURROGATES.register(name.lower(), factory, replace=replace, **kwargs)


def get(spec: str | Surrogate, **params) -> Surrogate:
    """Return a surrogate from a name (with optional parameters) or pass an instance through.

    Raises an ``InputError`` (a ``ValueError``) listing the valid names for an unknown name.
    """
    if isinstance(spec, Surrogate):
        if params:
            raise TypeError("parameters can only be given with a surrogate *name*, not an instance")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"surrogate must be a name or a Surrogate instance, got {type(spec).__name__}")
    return SURROGATES.get(spec)(**params)
