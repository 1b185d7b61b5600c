"""RMP-Loss (Guo et al., ICCV 2023) as a loss term: ``λ(n) · L_RMP`` with ``L_RMP`` of eq. 10 over
the pre-spike potentials of every spiking layer, each against its own neurons' threshold
(``MembraneRecorder.thresholds``: a per-channel or learned threshold included), and λ(n) of eq. 12
at the fractional epoch ``n`` (``rmp.k``, ``rmp.p``, ``rmp.reduction``; off with ``rmp.enabled=false``
or ``rmp.k=0``: nothing recorded, ``rmp`` and ``lambda`` logged as 0)."""

from __future__ import annotations

import torch

from ...losses import rmp_lambda, rmp_loss
from ..objective import LOSS_TERMS, Forward, LossTerm


class RMPTerm(LossTerm):
    """``λ(n) · L_RMP`` (eq. 10-12)."""

    metrics = ("rmp",)

    def __init__(self, *, enabled: bool, k: float, p: float, reduction: str, epochs: int):
        self.enabled = enabled and k > 0
        self.needs_membranes = self.enabled
        self.k, self.p, self.reduction, self.epochs = k, p, reduction, epochs

    def weight(self, progress: float) -> float:
        return rmp_lambda(progress, self.epochs, self.k) if self.enabled else 0.0

    def __call__(self, fwd: Forward, progress: float):
        if not self.enabled:
            return {"rmp": (torch.zeros((), device=fwd.out.device), 0.0)}
        value = rmp_loss(fwd.membranes, v_th=fwd.thresholds, p=self.p, reduction=self.reduction)
        return {"rmp": (value, self.weight(progress))}

    def logged(self, progress: float) -> dict[str, float]:
        return {"lambda": self.weight(progress)}


@LOSS_TERMS.register(
    "rmp", help="RMP-Loss with its λ schedule (eq. 10-12; the rmp section)", role="regulariser"
)
def rmp_term(cfg) -> RMPTerm:
    r = cfg.rmp
    return RMPTerm(enabled=r.enabled, k=r.k, p=r.p, reduction=r.reduction, epochs=cfg.optim.epochs)
