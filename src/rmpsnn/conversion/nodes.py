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

import dataclasses
import warnings

import torch
from torch import nn

from ..functional import signed_if_multistep
from ..neurons import IF

__all__ = ["IFNode", "add_per_channel"]


def add_per_channel(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x + values`` with ``values`` one per channel (axis 1 of ``x``)."""
    if x.ndim < 2:
        return x + values.to(x.dtype)
    return x + values.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))


class IFNode(IF):
    """IF neurons of one converted layer: the ordinary :class:`~rmpsnn.neurons.IF` neuron (soft
    reset by default, threshold ``v_th`` = θ, potential carried from chunk to chunk) with two
    additions for a network that still computes in activation units:

    * input ``[chunk*B, ...]`` (the steps of a chunk folded into the batch, so the convolutions
      around the node run once per chunk), and output ``o[t]·θ``;
    * an optional per-channel ``bias`` added to the input current (a calibration correction that
      could not be folded into the layer in front of it).

    It has no modes: statistics for balancing and calibration are gathered by observers that
    stand in for the node (:mod:`rmpsnn.conversion.observers`), or by hooks.  The threshold is
    ``v_th`` (``set_threshold`` replaces it); ``per_channel`` says whether balancing gives one θ per channel.
    ``v_init`` is ``None`` (0), ``"half"`` (θ/2) or a number: a fraction of θ.

    ``signed = True`` makes them signed IF neurons with memory
    (:func:`~rmpsnn.functional.signed_if_multistep`): a neuron that has fired emits a negative
    spike (output ``-θ``) when its potential drops below 0, so its spike count tracks the
    quantised ANN activation instead of over-counting after late negative input.
    """

    def __init__(self, name: str, reset: str = "soft", ann_activation: nn.Module | None = None):
        super().__init__(v_th=1.0, reset=reset, carry_state=True)
        self.layer_name = name
        self.ann_activation = ann_activation if ann_activation is not None else nn.ReLU()
        # calibration bias added to the input current, per channel; only used when the correction
        # cannot be folded into a Conv/Linear in front of the node (see calibrate.py)
        self.register_buffer("bias", None)
        self.chunk = 1
        self.per_channel = False
        self.spike_count: torch.Tensor | float = 0.0  # since reset_stats (not saved)
        self.neuron_steps = 0.0
        self._v_init_fraction: float | None = None
        self.signed = False
        self.count: torch.Tensor | None = None  # net spikes so far (signed neurons)

    @property
    def cap(self) -> float | None:
        """The clip value ``c`` of the activation this node replaces (ReLU6: 6, Hardtanh(0, c),
        clamp(0, c)); the threshold is capped at it.  None for a ReLU."""
        act = self.ann_activation
        return float(act.max_val) if isinstance(act, nn.Hardtanh) else None

    @property
    def v_init(self):
        return self._v_init_fraction if self._v_init_fraction is not None else self._params.v_init

    @v_init.setter
    def v_init(self, value) -> None:
        # a number is a fraction of θ (θ changes during balancing), applied at the first step
        fraction = isinstance(value, (int, float)) and not isinstance(value, bool)
        self._v_init_fraction = float(value) if fraction else None
        self._params = dataclasses.replace(self._params, v_init=None if fraction else value)

    @property
    def threshold(self) -> torch.Tensor:
        """Deprecated name of ``v_th`` (the one word for the threshold across rmpsnn)."""
        warnings.warn("IFNode.threshold is deprecated; use v_th", DeprecationWarning, stacklevel=2)
        return self.v_th

    @threshold.setter
    def threshold(self, value: torch.Tensor) -> None:
        msg = "setting IFNode.threshold is deprecated; use set_threshold(value)"
        warnings.warn(msg, DeprecationWarning, stacklevel=2)
        self.set_threshold(value)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "threshold"  # state dicts written before IFNode became an IF neuron
        if old in state_dict and prefix + "v_th" not in state_dict:
            state_dict[prefix + "v_th"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_state(self) -> None:
        super().reset_state()
        self.count = None

    def reset_stats(self) -> None:
        self.spike_count, self.neuron_steps = 0.0, 0.0

    def step_threshold(self, x: torch.Tensor) -> torch.Tensor:
        """θ shaped to multiply one step's output ``[B, C, ...]`` (per channel: axis 1)."""
        th = self.v_th.to(x.dtype)
        if th.ndim == 1:
            th = th.reshape(1, -1, *([1] * (x.ndim - 2)))
        return th

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            x = add_per_channel(x, self.bias)
        xt = x.unflatten(0, (self.chunk, x.shape[0] // self.chunk))
        if self.v is None and self._v_init_fraction is not None:
            self.v = self.step_threshold(xt[0]) * self._v_init_fraction
        if self.signed:
            spikes = self._signed(xt)
        else:
            spikes = super().forward(xt)  # the IF neuron over the chunk's steps
        # spikes of either sign cost a synaptic event; a tensor: no device sync per chunk
        self.spike_count = self.spike_count + (spikes.abs().sum() if self.signed else spikes.sum())
        self.neuron_steps += spikes.numel()
        return (spikes * self.step_threshold(xt[0]).unsqueeze(0)).flatten(0, 1)

    def _signed(self, xt: torch.Tensor) -> torch.Tensor:
        th = self.step_threshold(xt[0])
        v0 = self.v
        if v0 is None:
            v0 = (
                th / 2 if self._params.v_init == "half" else torch.zeros((), dtype=xt.dtype, device=xt.device)
            )
        record = self.recording
        out = signed_if_multistep(xt, th, v_init=v0, count_init=self.count, return_membrane=record)
        spikes, self.v, self.count = out[:3]
        if record:  # MembraneRecorder and monitors see signed neurons too
            self._emit(out[3])
        return spikes

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per time step since the last :meth:`reset_stats`."""
        return float(self.spike_count) / self.neuron_steps if self.neuron_steps else 0.0

    def extra_repr(self) -> str:
        th = f"{float(self.v_th):.4g}" if self.v_th.ndim == 0 else f"per-channel[{self.v_th.numel()}]"
        signed = ", signed=True" if self.signed else ""
        return f"threshold={th}, reset={self.reset!r}, v_init={self.v_init!r}{signed}"
