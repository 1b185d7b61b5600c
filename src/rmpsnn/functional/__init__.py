"""Pure, stateless tensor functions: neuron dynamics over time-major tensors ``[T, B, ...]``.

The modules in :mod:`rmpsnn.neurons` are thin stateful shells around these functions.
"""

from .neuron import RESETS, if_multistep, lif_multistep, lif_multistep_state

__all__ = ["RESETS", "if_multistep", "lif_multistep", "lif_multistep_state"]
