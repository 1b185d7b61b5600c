"""The registry of neuron kinds: ``NEURONS.get("plif")`` is the module class (or factory) that
builds a layer of them.  A factory takes the model's neuron keywords -- ``tau``, ``v_th``,
``surrogate``, ``reset`` -- and returns an ``nn.Module`` (a :class:`~rmpsnn.neurons.Neuron`, so
that :class:`~rmpsnn.neurons.MembraneRecorder` and RMP-Loss see it); a factory that has no use for
one of them accepts and ignores it (IF has no leak).  ``rmpsnn.models.create(name, neuron=...)``
and the training config's ``model.neuron`` take a registered name or such a callable."""

from __future__ import annotations

from ..registry import Registry

__all__ = ["NEURONS", "register_neuron"]

NEURONS: Registry = Registry("neuron")


def register_neuron(name: str, factory=None, **kwargs):
    """Register a neuron kind (call or decorator); ``NEURONS.register`` with a shorter name."""
    return NEURONS.register(name, factory, **kwargs)
