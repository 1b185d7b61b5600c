"""Pure, stateless tensor functions: neuron dynamics over time-major tensors ``[T, B, ...]``.

The modules in :mod:`rmpsnn.neurons` are thin stateful shells around these functions; both take
their parameters as one :class:`NeuronParams`.  Layout: :mod:`.params` (parameters, defaults,
checks), :mod:`.reference` (the differentiable reference step and :class:`~.reference.NeuronSpec`),
:mod:`.kernels` (the kernel registry and ``select_kernel``), :mod:`.fused` (kernel glue and custom
ops), :mod:`.neuron` (the public functions below).
"""

from .neuron import if_multistep, lif_multistep, lif_multistep_state, signed_if_multistep
from .params import IF_PARAMS, LIF_PARAMS, RESETS, NeuronParams

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
