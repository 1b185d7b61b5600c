"""Spiking-neuron modules: thin stateful shells around :mod:`rmpsnn.functional`.

* :class:`LIF` -- leaky integrate-and-fire, RMP-Loss defaults (tau 0.25, v_th 0.5, hard reset,
  InfLoR surrogate); ``learnable_threshold=True`` learns ``v_th``;
* :class:`IF` -- integrate-and-fire (tau 1) with the soft reset of the RMP neuron (RMP-SNN);
* :class:`PLIF` -- LIF with a learnable leak (Fang et al., ICCV 2021);
* :class:`SynapticLIF` -- current-based LIF, two state variables (synaptic current, potential);
* :class:`OutputIntegrator` -- the non-spiking read-out of RMP-Loss eq. 4;
* :class:`MembraneRecorder` -- collects the pre-spike potentials of a model's neurons and their
  thresholds during a forward pass, for RMP-Loss and for plots.

Neuron kinds are registered in :data:`NEURONS` (``"lif"``, ``"if"``, ``"plif"``,
``"lif-learnable-threshold"``, ``"if-learnable-threshold"``, ``"synaptic"``); a new kind is one
file plus :func:`register_neuron` (see docs/neurons.md, "Write your own neuron").

Two step modes, same maths:

* ``step_mode="multi"`` (default): input ``[T, B, ...]``, all time steps in one call.  Each
  call starts from ``v_init`` unless ``carry_state=True`` (then the potential after the last
  step is kept for the next call, e.g. to simulate a long run in chunks).
* ``step_mode="single"``: input ``[B, ...]``, one time step per call, the potential is kept
  between calls (streaming input).  Call :meth:`reset_state` (or
  :func:`reset_states` on a whole model) before a new sequence.
"""

from .base import STEP_MODES, MembraneRecorder, Neuron, OutputIntegrator, Stateful, reset_states
from .lif import IF, LIF, SpikingNeuron
from .plif import PLIF
from .registry import NEURONS, register_neuron
from .synaptic import SynapticLIF

__all__ = [
    "IF",
    "LIF",
    "NEURONS",
    "PLIF",
    "STEP_MODES",
    "MembraneRecorder",
    "Neuron",
    "OutputIntegrator",
    "SpikingNeuron",
    "Stateful",
    "SynapticLIF",
    "register_neuron",
    "reset_states",
]
