"""Cross-entropy on the read-out (RMP-Loss eq. 11's ``L_CE``): the integrator's final potential
(eq. 4) or its mean over T, depending on ``model.readout``."""

from __future__ import annotations

import torch.nn.functional as F

from ..objective import LOSS_TERMS, Forward, LossTerm


class CrossEntropy(LossTerm):
    """``CE(read-out, y)``, weight 1."""

    metrics = ("ce",)

    def __call__(self, fwd: Forward, progress: float):
        return {"ce": (F.cross_entropy(fwd.out, fwd.y), 1.0)}


@LOSS_TERMS.register("ce", help="cross-entropy on the read-out (RMP-Loss eq. 11)")
def cross_entropy(cfg) -> CrossEntropy:
    return CrossEntropy()
