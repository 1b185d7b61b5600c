"""The spiking layer that replaces a ReLU in a converted network.

An :class:`IFNode` receives the input current of ``chunk`` time steps folded into the batch
(``[chunk*B, ...]``, so the convolutions around it run once per chunk), runs IF neurons with
threshold ``θ`` over those steps (soft reset by default: the RMP neuron), keeps the membrane
potential for the next chunk, and outputs ``o[t]·θ``: spikes scaled to activation units.  The
firing rate times ``θ`` then approximates ``clip(a, 0, θ)`` of the ANN activation ``a``, so the
next layer's weights and biases and the residual additions work unchanged -- the same as
rescaling every layer's weights by ``θ_{l-1}/θ_l`` (Rueckauer et al. 2017), without touching
them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..functional import lif_multistep_state

__all__ = ["IFNode", "add_per_channel"]


def add_per_channel(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x + values`` with ``values`` one per channel (axis 1 of ``x``)."""
    if x.ndim < 2:
        return x + values.to(x.dtype)
    return x + values.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))


class IFNode(nn.Module):
    """IF neurons of one converted layer.

    Modes: ``"spike"`` (SNN) and ``"ann"`` (the original activation; for data-based balancing it
    records statistics of its input).  Spike-max balancing and calibration drive the node through
    :func:`~rmpsnn.conversion.layerwise.run_layerwise` instead.
    """

    def __init__(self, name: str, reset: str = "soft", ann_activation: nn.Module | None = None):
        super().__init__()
        self.layer_name = name
        self.reset = reset
        self.ann_activation = ann_activation if ann_activation is not None else nn.ReLU()
        self.register_buffer("threshold", torch.tensor(1.0))
        # calibration bias added to the input current, per channel; only used when the correction
        # cannot be folded into a Conv/Linear in front of the node (see calibrate.py)
        self.register_buffer("bias", None)
        self.v_init: str | float | None = None  # None, "half" (θ/2) or a fraction of θ
        self.mode = "spike"
        self.chunk = 1
        self.per_channel = False
        # state and statistics (not saved)
        self.v: torch.Tensor | None = None
        self.spike_count = 0.0
        self.neuron_steps = 0.0
        self.stat_max: torch.Tensor | None = None
        self.stat_samples: list[torch.Tensor] = []
        self.keep_rates = False
        self.rate_sum: torch.Tensor | None = None

    # -- state -------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.v = None
        self.rate_sum = None

    def reset_stats(self) -> None:
        self.spike_count, self.neuron_steps = 0.0, 0.0
        self.stat_max, self.stat_samples = None, []

    def _theta(self, x: torch.Tensor) -> torch.Tensor:
        th = self.threshold.to(x.dtype)
        if th.ndim == 1:  # per channel: channel axis is 1 of the per-step sample [B, C, ...]
            th = th.reshape(1, -1, *([1] * (x.ndim - 2)))
        return th

    def _channel_max(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            dims = [d for d in range(x.ndim) if d != 1]
            return x.detach().amax(dim=dims)
        return x.detach().max()

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "ann":
            self._record_ann(x)
            return self.ann_activation(x)
        if self.bias is not None:
            x = add_per_channel(x, self.bias)
        T = self.chunk
        xt = x.unflatten(0, (T, x.shape[0] // T))
        th = self._theta(x)[0] if self.threshold.ndim == 1 else self.threshold.to(x.dtype)
        if self.v is not None:
            v0 = self.v
        elif self.v_init == "half":
            v0 = "half"
        elif self.v_init is not None:
            v0 = th * float(self.v_init)
        else:
            v0 = None
        spikes, _, self.v = lif_multistep_state(xt, tau=1.0, v_th=th, reset=self.reset, v_init=v0)
        self.spike_count = self.spike_count + spikes.sum()  # a tensor: no device sync per chunk
        self.neuron_steps += spikes.numel()
        out = spikes * self._theta(xt[0]).unsqueeze(0)
        if self.keep_rates:
            s = out.sum(0)
            self.rate_sum = s if self.rate_sum is None else self.rate_sum + s
        return out.flatten(0, 1)

    def _record_ann(self, x: torch.Tensor) -> None:
        if self.stat_collect == "max":
            m = self._channel_max(x)
            self.stat_max = m if self.stat_max is None else torch.maximum(self.stat_max, m)
        elif self.stat_collect == "samples":
            xd = x.detach()
            if self.per_channel:
                xd = xd.transpose(0, 1).reshape(xd.shape[1], -1)  # [C, N]
                k = min(xd.shape[1], self.sample_cap)
                idx = torch.randperm(xd.shape[1], generator=self.sample_gen)[:k]
                self.stat_samples.append(xd[:, idx])
            else:
                pos = xd[xd > 0].reshape(-1)
                k = min(pos.numel(), self.sample_cap)
                idx = torch.randperm(pos.numel(), generator=self.sample_gen)[:k]
                self.stat_samples.append(pos[idx])

    stat_collect: str | None = None
    sample_cap: int = 200_000
    sample_gen: torch.Generator | None = None

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per time step since the last :meth:`reset_stats`."""
        return float(self.spike_count) / self.neuron_steps if self.neuron_steps else 0.0

    def extra_repr(self) -> str:
        th = (
            f"{float(self.threshold):.4g}"
            if self.threshold.ndim == 0
            else f"per-channel[{self.threshold.numel()}]"
        )
        return f"threshold={th}, reset={self.reset!r}, v_init={self.v_init!r}"
