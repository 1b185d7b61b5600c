"""Quantisation clip-floor-shift activation (QCFS; Bu et al., "Optimal ANN-SNN Conversion for
High-Accuracy and Ultra-Low-Latency Spiking Neural Networks", ICLR 2022).

    QCFS(x) = λ/L · clip(floor(x·L/λ + 1/2), 0, L)

with a trainable threshold λ (one per layer) and L quantisation levels.  An ANN trained with it
converts to IF neurons with threshold λ and initial potential λ/2 (``v_init="half"``) whose
expected output matches the ANN at any T, so accuracy is reached in far fewer steps than with
ReLU + soft reset alone.  The floor has a straight-through gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


class QCFS(nn.Module):
    """QCFS activation with ``levels`` steps and a trainable threshold (initialised to ``threshold``)."""

    def __init__(self, levels: int = 8, threshold: float = 8.0):
        super().__init__()
        if levels < 1:
            raise InputError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.threshold
        y = _FloorSTE.apply(x * self.levels / lam + 0.5)
        return torch.clamp(y, 0, self.levels) * (lam / self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}"
