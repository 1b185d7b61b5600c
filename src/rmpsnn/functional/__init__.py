"""Pure, stateless tensor functions: neuron dynamics over time-major tensors ``[T, B, ...]``.

The modules in :mod:`rmpsnn.neurons` are thin stateful shells around these functions; both take
their parameters as one :class:`NeuronParams`.
"""

from .neuron import (
    IF_PARAMS,
    LIF_PARAMS,
    RESETS,
    NeuronParams,
    if_multistep,
    lif_multistep,
    lif_multistep_state,
    signed_if_multistep,
)

__all__ = [
    "IF_PARAMS",
    "LIF_PARAMS",
    "RESETS",
    "NeuronParams",
    "if_multistep",
    "lif_multistep",
    "lif_multistep_state",
    "signed_if_multistep",
]
