"""TET, Temporal Efficient Training (Deng et al., ICLR 2022), as a loss term
(``loss.kind=tet``)::

    L_TET = (1/T) Σ_t CE(O_t, y)                 cross-entropy of every step's output
    L_MSE = (1/T) Σ_t MSE(O_t, φ)                 pulls the outputs toward the constant φ
    L     = (1 - λ) · L_TET + λ · L_MSE

``O_t`` is the output of step t going into the read-out (the OutputIntegrator's input, before it
integrates over time).  Defaults as the paper's code: λ = 1e-3, φ = 1.0 (``loss.kwargs.lam``,
``loss.kwargs.phi``).  Logged as ``ce`` (``L_TET``) and ``tet_mse`` (``L_MSE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..objective import LOSS_TERMS, Forward, LossTerm


def tet_parts(steps: torch.Tensor, y: torch.Tensor, phi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_TET, L_MSE)`` of the per-step outputs ``steps`` [T, B, K]."""
    T = steps.shape[0]
    ce = F.cross_entropy(steps.flatten(0, 1), y.repeat(T))  # = (1/T) Σ_t CE(O_t, y): equal batches
    mse = F.mse_loss(steps, torch.full_like(steps, phi))  # = (1/T) Σ_t MSE(O_t, φ)
    return ce, mse


class TET(LossTerm):
    """``(1 - λ) L_TET + λ L_MSE`` over the per-step outputs."""

    metrics = ("ce", "tet_mse")
    needs_steps = True

    def __init__(self, lam: float, phi: float):
        if not 0 <= lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam, self.phi = float(lam), float(phi)

    def __call__(self, fwd: Forward, progress: float):
        ce, mse = tet_parts(fwd.steps, fwd.y, self.phi)
        return {"ce": (ce, 1.0 - self.lam), "tet_mse": (mse, self.lam)}


@LOSS_TERMS.register("tet", help="TET: per-step cross-entropy + λ·MSE toward φ (Deng et al. 2022)")
def tet(cfg, lam: float = 1e-3, phi: float = 1.0) -> TET:
    return TET(lam, phi)
