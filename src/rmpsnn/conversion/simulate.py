"""Simulating a converted SNN: one walk of its ``torch.fx`` graph, in time-major or layer-major order.

Every node of the graph runs on all its time steps folded into the batch (``[steps*B, ...]``), an
IF node simulating those steps in one call.  :func:`simulate` walks the graph node by node and runs
each node on a list of *pieces* of input before it moves to the next node.  What the pieces are
sets the order of the work; the walk is the same:

* **time-major** (evaluation, the default): the piece is a chunk of a few steps of one batch
  (about ``samples_per_call`` image-steps).  The walk is repeated chunk after chunk and every IF
  node carries its membrane potential from one chunk to the next, so memory stays bounded at any T.
* **layer-major** (a ``layer_step`` is given: balancing, calibration): the pieces are all the
  images, each with all its ``T`` steps, so the callback sees every input current of IF layer ``l``
  -- and may set its threshold or bias -- before layer ``l + 1`` runs.  Spike-max balancing (the
  largest input current at each layer, the layers before it already balanced) therefore costs one
  simulation in all instead of one per layer.

Memory is what limits layer-major order (every image × step of a layer at once), so there: only
values still needed by a later node are kept; an IF layer's output is kept as 1-byte spikes and
multiplied by θ only when a node reads it (the same values, a quarter of the memory); and the
images are cut into pieces of about ``samples_per_call`` image-steps, so temporaries stay small.
Both orders give the same outputs (``tests/test_conversion.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import fx

from ..errors import InputError
from .nodes import IFNode, add_per_channel
from .pooling import SpikingMaxPool

__all__ = ["IFLayerStep", "encode_input", "simulate", "simulate_layer"]

# (index of the IF layer, the node, its input currents per piece) -> its outputs per piece
IFLayerStep = Callable[[int, IFNode, list[torch.Tensor]], Iterable[torch.Tensor]]


def simulate_layer(
    node: IFNode, inputs: Sequence[torch.Tensor], timesteps: int, shift: torch.Tensor | None = None
) -> Iterator[torch.Tensor]:
    """Simulate one IF layer from rest on each piece of input currents ``[T*B, ...]`` (plus
    ``shift`` per channel, if given), yielding its output piece by piece."""
    try:
        for x in inputs:
            if shift is not None:
                x = add_per_channel(x, shift)
            node.reset_state()
            node.chunk = timesteps
            yield node(x)
    finally:
        node.reset_state()


def encode_input(
    x: torch.Tensor, steps: int, encoding: str, input_max: float, gen: torch.Generator | None
) -> torch.Tensor:
    """``steps`` steps of input for a static batch ``x`` ``[B, ...]``, folded: ``[steps*B, ...]``.

    ``"direct"`` repeats the analog input every step; ``"poisson"`` emits ``±input_max`` with
    probability ``|x| / input_max`` (drawn on the CPU from ``gen``, so runs repeat on any device).
    """
    xs = x.unsqueeze(0).expand(steps, *x.shape)
    if encoding == "direct":
        return xs.reshape(steps * x.shape[0], *x.shape[1:])
    p = (xs.abs() / input_max).clamp(0, 1)
    u = torch.rand(p.shape, generator=gen, device="cpu").to(x.device)
    spikes = (u < p).to(x.dtype) * torch.sign(xs) * input_max
    return spikes.reshape(steps * x.shape[0], *x.shape[1:])


class _Spikes:
    """An IF layer's output ``spikes · θ`` stored as 1-byte spikes (signed neurons: -1/0/+1) and
    its θ."""

    def __init__(self, out: torch.Tensor, node: IFNode):
        # θ > 0, so the output's sign is the spike's
        self.spikes = torch.sign(out).to(torch.int8) if node.signed else out != 0
        self.theta = node.step_threshold(out)
        self.dtype = out.dtype

    def tensor(self) -> torch.Tensor:
        return self.spikes.to(self.dtype) * self.theta  # the same product the node computed


class _Static:
    """A value that is the same at every step (direct input, and layers computed from it alone):
    kept as one step ``[B, ...]`` and repeated over the chunk's ``steps`` only when a node that
    depends on time reads it."""

    def __init__(self, x: torch.Tensor, steps: int):
        self.x, self.steps = x, steps

    def tensor(self) -> torch.Tensor:
        x = self.x
        return x.unsqueeze(0).expand(self.steps, *x.shape).reshape(self.steps * x.shape[0], *x.shape[1:])


def _value(v):
    return v.tensor() if isinstance(v, (_Spikes, _Static)) else v


class _GraphWalk:
    """The graph's nodes in order, the last node reading each value, and an interpreter: built
    once per simulation, walked once per chunk (time-major) or once in all (layer-major)."""

    def __init__(self, snn):
        self.snn = snn
        self.gm: fx.GraphModule = snn.graph_module
        self.nodes = list(self.gm.graph.nodes)
        self.last_use = {a.name: i for i, n in enumerate(self.nodes) for a in n.all_input_nodes}
        self.interp = fx.Interpreter(self.gm)

    def run(
        self,
        pieces: list[torch.Tensor],
        if_layer: IFLayerStep,
        *,
        steps: int,
        compact: bool,
        progress: Callable[[str], None] | None = None,
        static: dict[str, torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Run the graph on ``pieces`` (encoded inputs), each node on every piece before the next
        node; IF layer ``k`` runs as ``if_layer(k, node, inputs)``.  Every piece holds ``steps``
        steps; stateful pooling carries its state from call to call (time-major: the pieces are
        successive chunks) unless ``compact`` (layer-major: each piece is a simulation from rest).
        ``static`` (time-major, direct input: ``pieces`` is the one static batch ``[B, ...]``):
        the layers that depend only on the input run once on ``[B, ...]`` and are kept in this
        dict from chunk to chunk, so the input layer's current is computed once for all T.
        Returns the output per piece."""
        gm, interp = self.gm, self.interp
        env: dict[str, list] = {}
        k = 0
        result: list[torch.Tensor] = []
        for i, n in enumerate(self.nodes):
            if n.op == "placeholder":
                env[n.name] = [_Static(p, steps) for p in pieces] if static is not None else pieces
            elif n.op == "output":
                result = [_value(v) for v in env[n.args[0].name]]
            else:
                module = gm.get_submodule(n.target) if n.op == "call_module" else None
                if isinstance(module, IFNode):
                    inputs = [_value(v) for v in env[n.args[0].name]]
                    outs = if_layer(k, module, inputs)
                    env[n.name] = [_Spikes(o, module) if compact else o for o in outs]
                    del inputs, outs
                    if progress is not None:
                        progress(f"layer {k + 1}/{len(self.snn.if_names)} ({module.layer_name}) done")
                    k += 1
                elif isinstance(module, SpikingMaxPool):
                    outs = []
                    for v in env[n.args[0].name]:
                        if compact:
                            module.reset_state()
                        module.chunk = steps
                        outs.append(module(_value(v)))
                    if compact:
                        module.reset_state()
                    env[n.name] = outs
                elif static is not None and self._is_static(n, env, module):
                    if n.name not in static:
                        interp.env = {a: env[a.name][0].x for a in n.all_input_nodes}
                        static[n.name] = interp.run_node(n)
                    env[n.name] = [_Static(static[n.name], steps)]
                else:
                    outs = []
                    for b in range(len(pieces)):
                        interp.env = {a: _value(env[a.name][b]) for a in n.all_input_nodes}
                        outs.append(interp.run_node(n))
                    env[n.name] = outs
            for a in n.all_input_nodes:  # free what no later node reads
                if self.last_use.get(a.name) == i:
                    env.pop(a.name, None)
        interp.env = {}
        return result

    @staticmethod
    def _is_static(n: fx.Node, env: dict, module) -> bool:
        """A per-sample layer (a module: conv, linear, pooling, flatten) reading only static values."""
        return (
            module is not None
            and all(isinstance(env[a.name][0], _Static) for a in n.all_input_nodes)
            and bool(n.all_input_nodes)
        )


# The largest activation of one piece of work on CPU.  Tensors above glibc's mmap threshold (at
# most 32 MiB) are mapped and unmapped on every allocation: every chunk then page-faults its
# temporaries in anew (measured on the quickstart's network, 2 cores: 512 image-steps per piece,
# 64 MiB activations, spent 45 % of its time in the kernel; 16 MiB pieces ran 1.7x faster).
PIECE_BYTES = 16 * 2**20
_DEFAULT_SAMPLES_PER_CALL = 512  # on accelerators, where larger pieces only help


def _auto_samples_per_call(walk: _GraphWalk, x: torch.Tensor) -> int:
    """Image-steps per piece such that the largest IF layer input of a piece is about
    :data:`PIECE_BYTES` (CPU); :data:`_DEFAULT_SAMPLES_PER_CALL` on other devices.  Measured on
    one image, one step, with the IF layers answering zeros: no neuron runs, so no state,
    statistic or recorder sees the probe."""
    if x.device.type != "cpu" or not len(x):
        return _DEFAULT_SAMPLES_PER_CALL
    peak = 0

    def measure(k: int, node: IFNode, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        nonlocal peak
        peak = max([peak] + [v.numel() * v.element_size() for v in xs])
        return [torch.zeros_like(v) for v in xs]

    walk.run([encode_input(x[:1], 1, "direct", 1.0, None)], measure, steps=1, compact=True)
    return max(1, PIECE_BYTES // max(peak, 1))


def _input_generator(snn) -> torch.Generator | None:
    """Poisson input is seeded anew for every batch, so a batch's spikes do not depend on the others."""
    return torch.Generator().manual_seed(snn.seed) if snn.encoding == "poisson" else None


@torch.no_grad()
def simulate(
    snn,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    timesteps: int,
    layer_step: IFLayerStep | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    samples_per_call: int | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Simulate ``snn`` (a :class:`~rmpsnn.conversion.ConvertedSNN`) for ``timesteps`` steps on
    static inputs (a tensor ``[B, ...]`` or a sequence of such batches); returns the read-out of
    every step, ``[T, B, classes]`` (per step, not accumulated), the batches concatenated.

    Without ``layer_step`` the simulation is time-major, in chunks of ``chunk`` steps (default:
    about ``samples_per_call`` image-steps per chunk; by default as many as keep the largest
    activation of a chunk near :data:`PIECE_BYTES` on CPU, 512 elsewhere).  With it, layer-major:
    ``layer_step(k, node, inputs)`` is called for the ``k``-th IF layer with its input currents
    (one ``[T*b, ...]`` tensor per piece of about ``samples_per_call`` image-steps) and returns
    the layer's outputs, e.g. ``simulate_layer(node, inputs, T)`` after setting its threshold or
    bias; ``progress`` then receives one line per IF layer.  See the module docstring for the two orders.
    """
    if timesteps < 1:
        raise InputError(f"timesteps must be >= 1, got {timesteps}")
    batches = [inputs] if torch.is_tensor(inputs) else list(inputs)
    if not batches:
        raise InputError("simulate() got no input batches")

    def encode(x: torch.Tensor, steps: int, gen: torch.Generator | None) -> torch.Tensor:
        return encode_input(x, steps, snn.encoding, snn.input_max, gen)

    walk = _GraphWalk(snn)
    if samples_per_call is None and (layer_step is not None or not chunk):  # else unused
        samples_per_call = _auto_samples_per_call(walk, batches[0])
    if layer_step is not None:
        per = max(1, samples_per_call // timesteps)
        pieces = [part for x in batches for part in x.split(per)]
        outs = walk.run(
            [encode(p, timesteps, _input_generator(snn)) for p in pieces],
            layer_step,
            steps=timesteps,
            compact=True,
            progress=progress,
        )
        return torch.cat([o.unflatten(0, (timesteps, -1)) for o in outs], dim=1)

    per_batch = []
    for x in batches:
        B = x.shape[0]
        c_max = max(1, min(chunk or samples_per_call // max(B, 1), timesteps))
        gen = _input_generator(snn)
        snn.reset_state()
        static = {} if snn.encoding == "direct" else None  # layers computed once for all steps
        steps, done = [], 0
        while done < timesteps:
            c = min(c_max, timesteps - done)

            def carry_on(k: int, node: IFNode, xs: list[torch.Tensor], c=c) -> list[torch.Tensor]:
                node.chunk = c  # the potential carries over from the previous chunk
                return [node(v) for v in xs]

            pieces = [x] if static is not None else [encode(x, c, gen)]
            (y,) = walk.run(pieces, carry_on, steps=c, compact=False, static=static)
            steps.append(y.unflatten(0, (c, B)))
            done += c
        per_batch.append(torch.cat(steps))
    return torch.cat(per_batch, dim=1)
