"""Export to and import from NIR, the Neuromorphic Intermediate Representation (nir.readthedocs.io)
that snnTorch, Norse, SpikingJelly, Lava, sinabs and neuromorphic chips read.

**Graph.**  Conv2d (with the following tdBN/BN folded into its weight and bias), Linear ->
``Affine``, AvgPool2d, global average pool -> ``AvgPool2d`` over the whole map, Flatten, LIF,
IF, the output integrator -> ``I``; a residual block becomes two edges into its second LIF
(NIR sums the inputs of a node).  Anything else (max-pool, dropout in training mode, custom
modules) raises :class:`NIRExportError` naming the module.

**Neuron semantics.**  NIR's neurons are continuous-time ODEs; rmpsnn's are discrete (one step
per time step), written as the forward-Euler step at the ``dt`` the reader will simulate with
(``to_nir(dt=...)`` or ``target=``; stored in the graph's metadata; default 1):

* A neuron with leak β < 1, ``u[t] = β u[t-1] + x[t]``, is ``LIF``
  ``τ du/dt = (v_leak - u) + R I`` with ``τ = dt / (1 - β)``, ``R = 1 / (1 - β)``,
  ``v_leak = 0``; ``v_threshold`` = θ, ``v_reset = 0``.
* β = 1 (IF) is ``du/dt = R I`` with ``R = 1 / dt``; the output integrator likewise (``I``).
* **Reset.**  NIR's IF/LIF only know reset-to-``v_reset``.  The soft reset (``u -= θ`` on a
  spike) that RMP neurons depend on has no NIR equivalent, so exporting it is refused unless
  ``allow_lossy_reset=True``: then the node says ``v_reset = 0`` (what other tools will
  simulate -- a different network) and carries ``{"rmpsnn": {"reset": "soft"}}`` in its
  metadata, which :func:`from_nir` reads to restore the soft reset exactly.  A warning says so.
* **Portable graphs** (``portable=True``, the default for another tool's ``target``) hold only
  what snnTorch, Norse and SpikingJelly read; see
  :func:`~rmpsnn.export.nir.portable.make_portable` and docs/export.md for what each of them runs
  identically (tested against their importers).

**Time.**  A static image is fed at every step (direct encoding); the number of steps, the
integrator's read-out (final potential or mean) and the surrogate gradient are in metadata.

**Converted SNNs** (:class:`rmpsnn.conversion.ConvertedSNN`) are exported from their
``torch.fx`` graph: each IF layer becomes ``IF`` (threshold θ, per channel if balanced so)
followed by ``Scale(θ)`` (the layer outputs spikes x θ), additions become summed edges, and
the accumulated read-out an ``I`` node; the initial potential (e.g. θ/2) is in metadata.
"""

from .common import TARGET_DT
from .reader import NIRNetwork, from_nir
from .writer import to_nir

__all__ = ["TARGET_DT", "NIRNetwork", "from_nir", "to_nir"]
