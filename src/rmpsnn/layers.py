"""Layers for time-major spiking networks: time folding, threshold-dependent BN, encoders.

A per-sample layer (Conv2d, Linear, pooling, BatchNorm) treats every time step alike, so it
runs over ``[T, B, ...]`` by folding time into the batch -- ``[T*B, ...]`` -- in one call
(:class:`TimeFolded`).  Only the neuron recurrence loops over T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .functional.params import LIF_PARAMS
from .limits import whole_steps

__all__ = [
    "DirectEncoder",
    "PoissonEncoder",
    "TdBatchNorm",
    "TdBatchNorm1d",
    "TdBatchNorm2d",
    "TimeFolded",
    "call_timesteps",
    "fold_time",
    "repeat_time",
    "unfold_time",
]


def _require_rank(x: torch.Tensor, min_rank: int, what: str, shape: str) -> None:
    if x.ndim < min_rank:
        raise InputError(f"{what}: expected a time-major tensor {shape}, got shape {tuple(x.shape)}")


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]`` (a view when ``x`` is contiguous)."""
    _require_rank(x, 2, "fold_time", "[T, B, ...]")
    return x.flatten(0, 1)


def unfold_time(y: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]`` with ``T = timesteps``."""
    if y.ndim < 1 or y.shape[0] % timesteps:
        raise InputError(
            f"unfold_time: leading dimension {tuple(y.shape)[:1]} is not a multiple of timesteps={timesteps}"
        )
    return y.unflatten(0, (timesteps, y.shape[0] // timesteps))


def repeat_time(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``[B, ...] -> [T, B, ...]`` by repetition (direct encoding), without copying memory."""
    if timesteps < 1:
        raise InputError(f"timesteps must be >= 1, got {timesteps}")
    return x.unsqueeze(0).expand((timesteps, *x.shape))


def call_timesteps(own: int | None, given: int | None, *, what: str, input_steps: int | None = None) -> int:
    """The T of one call of a network -- rmpsnn's one time convention (docs/neurons.md, "Time").

    A time-major input ``[T, B, ...]`` brings its own T (``input_steps``; a ``timesteps`` given
    with it must agree).  A static batch is repeated over the ``timesteps`` of the call if given,
    else over the network's own (``own``, set when it was built)."""
    if given is not None:
        given = whole_steps(given, what=what)
    if input_steps is not None:
        if given is not None and given != input_steps:
            raise InputError(
                f"{what}: the input is time-major with T = {input_steps}, but timesteps={given} was given; "
                f"give one of them"
            )
        return input_steps
    steps = own if given is None else given
    if steps is None:
        raise InputError(f"{what}: give timesteps (T) for a static input; the network has none of its own")
    return whole_steps(steps, what=what)


class TimeFolded(nn.Sequential):
    """Run per-sample layers over ``[T, B, ...]`` by folding T into the batch.

    ``TimeFolded(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64))(x)`` maps
    ``[T, B, 3, H, W] -> [T, B, 64, H, W]`` with one convolution over ``T*B`` images.
    BatchNorm inside sees statistics over time and batch jointly (as tdBN requires).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _require_rank(x, 3, "TimeFolded", "[T, B, ...] (at least 3 dimensions)")
        T, B = x.shape[:2]
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, (T, B))


class TdBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Threshold-dependent batch normalisation (tdBN, Zheng et al. AAAI 2021; RMP-Loss eq. 6-7).

    Normalises each channel over time, batch (and space) jointly, to ``N(0, (α V_th)²)``, then
    applies the affine transform::

        x̂ = α V_th (x - E[x]) / sqrt(Var[x] + ε)          (eq. 6)
        y = λ x̂ + β                                        (eq. 7)

    ``α = 1`` normally and ``1/√2`` for the BNs whose outputs are summed in a residual block.
    Implemented as a standard BN over ``[T*B, C, ...]`` with the weight scaled by ``α V_th``, so
    it costs the same as ``nn.BatchNorm``.  Accepts time-major input or already folded input.
    """

    _time_major_rank: tuple[int, ...] = ()
    _folded_rank: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        alpha: float = 1.0,
        v_th: float = LIF_PARAMS.v_th,  # the LIF default threshold, from its one definition
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if alpha <= 0 or v_th <= 0:
            raise InputError(f"tdBN needs alpha > 0 and v_th > 0, got alpha={alpha}, v_th={v_th}")
        self.alpha = float(alpha)
        self.v_th = float(v_th)

    def _fold(self, x: torch.Tensor):
        if x.ndim in self._time_major_rank and x.shape[2] == self.num_features:
            return x.flatten(0, 1), x.shape[:2]
        if x.ndim in self._folded_rank and x.shape[1] == self.num_features:
            return x, None
        raise InputError(
            f"{type(self).__name__}({self.num_features}): expected {self._expected} with "
            f"C={self.num_features}, got shape {tuple(x.shape)}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf, tb = self._fold(x)
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = (
                1.0 / float(self.num_batches_tracked) if self.training and self.track_running_stats else 0.0
            )
        else:
            factor = self.momentum
        use_batch = self.training or not self.track_running_stats
        scale = self.alpha * self.v_th
        weight = (
            self.weight * scale
            if self.weight is not None
            else torch.full((self.num_features,), scale, dtype=xf.dtype, device=xf.device)
        )
        y = F.batch_norm(
            xf,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )
        return y.unflatten(0, tb) if tb is not None else y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:.4g}, v_th={self.v_th:g}"


class TdBatchNorm2d(TdBatchNorm):
    __doc__ = TdBatchNorm.__doc__ + "\n    Input ``[T, B, C, H, W]`` (or folded ``[T*B, C, H, W]``)."
    _time_major_rank = (5,)
    _folded_rank = (4,)
    _expected = "[T, B, C, H, W] (or folded [T*B, C, H, W])"


class TdBatchNorm1d(TdBatchNorm):
    __doc__ = TdBatchNorm.__doc__ + (
        "\n    Input ``[T, B, C]`` / ``[T, B, C, L]`` (or folded ``[T*B, C]`` / ``[T*B, C, L]``);"
        "\n    a rank-3 input is read as time-major ``[T, B, C]`` when its last dimension is C."
    )
    _time_major_rank = (3, 4)
    _folded_rank = (2, 3)
    _expected = "[T, B, C] or [T, B, C, L] (or folded [T*B, C] / [T*B, C, L])"


def residual_alpha() -> float:
    """tdBN's α for BNs whose outputs are added in a residual block: ``1/√2``."""
    return 1.0 / math.sqrt(2.0)


class DirectEncoder(nn.Module):
    """Direct (analog) encoding: the same static input at every step, ``[B, ...] -> [T, B, ...]``."""

    def __init__(self, timesteps: int):
        super().__init__()
        if timesteps < 1:
            raise InputError(f"timesteps must be >= 1, got {timesteps}")
        self.timesteps = int(timesteps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return repeat_time(x, self.timesteps)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"


class PoissonEncoder(nn.Module):
    """Poisson (Bernoulli per step) rate coding: ``o[t] ~ Bernoulli(clamp(|x| * gain, 0, 1))``,
    with the sign of ``x`` kept (for normalised, signed inputs).  Seeded for reproducibility:
    the generator is re-seeded on :meth:`reset` (``seed=None`` uses the global RNG)."""

    def __init__(self, timesteps: int, gain: float = 1.0, seed: int | None = None):
        super().__init__()
        if timesteps < 1:
            raise InputError(f"timesteps must be >= 1, got {timesteps}")
        self.timesteps = int(timesteps)
        self.gain = float(gain)
        self.seed = seed
        self._gen: torch.Generator | None = None

    def reset(self) -> None:
        self._gen = None

    reset_state = reset  # what rmpsnn.neurons.reset_states calls on every stateful module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = None
        if self.seed is not None:
            if self._gen is None or self._gen.device != x.device:
                self._gen = torch.Generator(device=x.device).manual_seed(self.seed)
            gen = self._gen
        p = (x.abs() * self.gain).clamp(0, 1)
        u = torch.rand((self.timesteps, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
        return (u < p).to(x.dtype) * torch.sign(x)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, gain={self.gain:g}, seed={self.seed}"


__all__ += ["residual_alpha"]
