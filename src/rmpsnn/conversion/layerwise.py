"""Layer-major simulation of a converted SNN, for balancing and calibration.

:meth:`ConvertedSNN.forward` runs time-major: chunk after chunk of time steps through the whole
network.  Balancing and calibration need the opposite order -- every time step of every
calibration image at layer ``l`` before layer ``l`` gets its threshold or its bias correction,
and only then layer ``l + 1``.  :func:`run_layerwise` walks the ``torch.fx`` graph once, node by
node; each node runs on all ``T`` steps folded into the batch (``[T*B, ...]``), an IF node
simulates its ``T`` steps in one call, and a callback can look at (and change) an IF layer
between seeing its input currents and passing its spikes on.  Spike-max balancing (the largest
input current at each layer, with the layers before it already balanced) therefore costs one
simulation in all instead of one per layer.

Memory is what limits this order (every image × step of a layer at once), so: only values still
needed by a later node are kept; an IF layer's output is kept as 1-byte spikes and multiplied by
θ only when a node reads it (the same values, a quarter of the memory); and the calibration data
is cut into batches of about ``samples_per_batch`` image-steps, so temporaries stay small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import fx

from .nodes import IFNode, add_per_channel

__all__ = ["IFLayerStep", "run_layerwise"]

# (index of the IF layer, the node, its input currents per batch) -> its outputs per batch
IFLayerStep = Callable[[int, IFNode, list[torch.Tensor]], Iterable[torch.Tensor]]


def run_if(
    node: IFNode, inputs: Sequence[torch.Tensor], timesteps: int, shift: torch.Tensor | None = None
) -> Iterator[torch.Tensor]:
    """Simulate one IF layer from rest on each batch of input currents ``[T*B, ...]`` (plus
    ``shift`` per channel, if given), yielding its output batch by batch."""
    try:
        for x in inputs:
            if shift is not None:
                x = add_per_channel(x, shift)
            node.reset_state()
            node.chunk = timesteps
            yield node(x)
    finally:
        node.reset_state()


class _Spikes:
    """An IF layer's output ``spikes · θ`` stored as 1-byte spikes (signed neurons: -1/0/+1) and
    its θ."""

    def __init__(self, out: torch.Tensor, node: IFNode):
        # θ > 0, so the output's sign is the spike's
        self.spikes = torch.sign(out).to(torch.int8) if node.signed else out != 0
        self.theta = node._theta(out)
        self.dtype = out.dtype

    def tensor(self) -> torch.Tensor:
        return self.spikes.to(self.dtype) * self.theta  # the same product the node computed


def _value(v):
    return v.tensor() if isinstance(v, _Spikes) else v


def _input_generator(snn) -> torch.Generator | None:
    """Poisson input is seeded per batch, as :meth:`ConvertedSNN.forward` does."""
    return torch.Generator().manual_seed(snn.seed) if snn.encoding == "poisson" else None


@torch.no_grad()
def run_layerwise(
    snn,
    batches: Sequence[torch.Tensor],
    timesteps: int,
    step: IFLayerStep | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    samples_per_batch: int = 512,
) -> list[torch.Tensor]:
    """Simulate ``snn`` (a :class:`~rmpsnn.conversion.ConvertedSNN`) for ``timesteps`` steps on
    each of ``batches`` (static inputs ``[B, ...]``), one graph node at a time.

    ``step(k, node, inputs)`` is called for the ``k``-th IF layer with its input currents (one
    ``[T*B, ...]`` tensor per batch) and returns its outputs; it may set the layer's threshold or
    bias first.  The default just simulates the layer.  ``progress`` receives one line per IF
    layer.  Returns the network's output per batch, ``[T*B, classes]`` (per step, not summed),
    the batches cut to about ``samples_per_batch`` image-steps each.
    """
    per = max(1, samples_per_batch // timesteps)
    batches = [part for x in batches for part in x.split(per)]
    gm: fx.GraphModule = snn.graph_module
    nodes = list(gm.graph.nodes)
    last_use = {}
    for i, n in enumerate(nodes):
        for a in n.all_input_nodes:
            last_use[a.name] = i
    interp = fx.Interpreter(gm)
    env: dict[str, list] = {}
    k = 0
    result: list[torch.Tensor] = []
    for i, n in enumerate(nodes):
        if n.op == "placeholder":
            env[n.name] = [snn._encode(x, timesteps, _input_generator(snn)) for x in batches]
        elif n.op == "output":
            result = [_value(v) for v in env[n.args[0].name]]
        else:
            module = gm.get_submodule(n.target) if n.op == "call_module" else None
            if isinstance(module, IFNode):
                inputs = [_value(v) for v in env[n.args[0].name]]
                outs = run_if(module, inputs, timesteps) if step is None else step(k, module, inputs)
                env[n.name] = [_Spikes(o, module) for o in outs]
                del inputs, outs
                if progress is not None:
                    progress(f"layer {k + 1}/{len(snn.if_names)} ({module.layer_name}) done")
                k += 1
            else:
                outs = []
                for b in range(len(batches)):
                    interp.env = {a: _value(env[a.name][b]) for a in n.all_input_nodes}
                    outs.append(interp.run_node(n))
                env[n.name] = outs
        for a in n.all_input_nodes:  # free what no later node reads
            if last_use.get(a.name) == i:
                env.pop(a.name, None)
    interp.env = {}
    return result
