"""Import: a NIR graph as an rmpsnn network (:func:`from_nir`, :class:`NIRNetwork`), each IF/LIF
node read in its producer's convention."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import NIRExportError, one_line
from ...layers import TimeFolded, call_timesteps, repeat_time
from ...limits import check_timesteps
from ...neurons import IF, LIF, OutputIntegrator
from .common import DT, nir_package, node_meta, resolve_dt, whole_pair

__all__ = ["MAX_TIMESTEPS", "NIRNetwork", "from_nir"]


class _Sum(nn.Module):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class NIRNetwork(nn.Module):
    """An rmpsnn network built from a NIR graph: nodes run in topological order on time-major
    tensors ``[T, B, ...]`` (a static batch ``[B, C, H, W]`` is repeated over ``timesteps``)."""

    def __init__(
        self,
        modules: dict[str, nn.Module],
        inputs: dict[str, list[str]],
        order: list[str],
        output: list[str],
        timesteps: int,
        input_kind: str,
    ):
        super().__init__()
        self.layers = nn.ModuleDict({k.replace(".", "__"): v for k, v in modules.items()})
        self.inputs, self.order, self.output = inputs, order, output
        self.timesteps, self.input_kind = timesteps, input_kind

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The output of every step, ``[T, B, ...]``, for a static batch ``[B, C, H, W]`` (over
        ``timesteps``, default the graph's own) or a time-major input (its T)."""
        if x.ndim != 4:
            call_timesteps(self.timesteps, timesteps, what="the NIR network", input_steps=x.shape[0])
        else:  # a static batch: the same input at every step (direct encoding)
            steps = call_timesteps(self.timesteps, timesteps, what="the NIR network")
            check_timesteps(
                steps, x[0].numel() * x.shape[0] * max(len(self.order), 1), what="the NIR network"
            )
            x = repeat_time(x, steps)
        values = {"input": x}
        for name in self.order:
            ins = [values[i] for i in self.inputs[name]]
            h = ins[0] if len(ins) == 1 else _Sum()(*ins)
            values[name] = self.layers[name.replace(".", "__")](h)
        outs = [values[o] for o in self.output]
        return outs[0] if len(outs) == 1 else _Sum()(*outs)


def _uniform(a, what: str, node: str) -> float:
    a = _finite_array(a, what, node)
    if a.size and not np.allclose(a, a.flat[0]):
        raise NIRExportError(f"NIR node {node}: per-neuron {what} is not supported by rmpsnn's neurons")
    return float(a.flat[0]) if a.size else 0.0


def _finite_array(a, what: str, node: str) -> np.ndarray:
    try:
        a = np.asarray(a, np.float64)
    except (TypeError, ValueError) as e:
        raise NIRExportError(f"NIR node {node}: {what} is not numeric ({e})") from e
    if not np.isfinite(a).all():
        raise NIRExportError(f"NIR node {node}: {what} holds NaN or infinite values")
    return a


def _tensor(a, what: str, node: str, ndim: int | None = None) -> torch.Tensor:
    arr = _finite_array(a, what, node)
    if ndim is not None and arr.ndim != ndim:
        raise NIRExportError(
            f"NIR node {node}: {what} has {arr.ndim} dimensions {list(arr.shape)}, not {ndim}"
        )
    return torch.as_tensor(arr, dtype=torch.float32)


def _conv_module(name: str, node) -> nn.Module:
    w = _tensor(node.weight, "weight", name, ndim=4)  # [out, in / groups, kh, kw]
    bias = _tensor(node.bias, "bias", name, ndim=1)
    groups = int(_uniform(node.groups, "groups", name))
    if groups < 1 or w.shape[0] % groups:
        raise NIRExportError(
            f"NIR node {name}: groups={groups} must be >= 1 and divide the {w.shape[0]} outputs"
        )
    if len(bias) != w.shape[0]:
        raise NIRExportError(f"NIR node {name}: {len(bias)} biases for {w.shape[0]} output channels")
    try:
        conv = nn.Conv2d(
            w.shape[1] * groups,
            w.shape[0],
            tuple(w.shape[2:]),
            stride=whole_pair(node.stride),
            padding=whole_pair(node.padding),
            dilation=whole_pair(node.dilation),
            groups=groups,
        )
    except (ValueError, RuntimeError) as e:
        raise NIRExportError(f"NIR node {name}: not a valid convolution ({e})") from e
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(bias)
    return TimeFolded(conv)


def _linear_module(name: str, node, nir) -> nn.Module:
    w = _tensor(node.weight, "weight", name, ndim=2)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
    lin.weight.data.copy_(w)
    if isinstance(node, nir.Affine):
        bias = _tensor(node.bias, "bias", name, ndim=1)
        if len(bias) != w.shape[0]:
            raise NIRExportError(f"NIR node {name}: {len(bias)} biases for {w.shape[0]} outputs")
        lin.bias.data.copy_(bias)
    return TimeFolded(lin)


def _pool_module(name: str, node, nir) -> nn.Module:
    """AvgPool2d, or SumPool2d (Norse's pooling; rmpsnn writes it for target="norse"): an average
    pool that does not divide (``divisor_override=1``)."""
    k, s, p = (
        tuple(int(v) for v in np.atleast_1d(_finite_array(a, what, name)))
        for a, what in ((node.kernel_size, "kernel_size"), (node.stride, "stride"), (node.padding, "padding"))
    )
    if min(k + s) < 1 or min(p) < 0:
        raise NIRExportError(
            f"NIR node {name}: pool kernel {k}, stride {s} must be >= 1 and padding {p} >= 0"
        )
    one = lambda t: t if len(t) > 1 else t[0]  # noqa: E731
    divisor = 1 if isinstance(node, nir.SumPool2d) else None
    try:
        return TimeFolded(nn.AvgPool2d(one(k), one(s), one(p), divisor_override=divisor))
    except (ValueError, RuntimeError) as e:
        raise NIRExportError(f"NIR node {name}: not a valid pool ({e})") from e


def _neuron_module(name: str, node, dt: float, convention: str, nir) -> nn.Module:
    """LIF or IF.  ``convention`` says how the graph's producer meant the input gain: "rmpsnn"
    (also snnTorch's and SpikingJelly's importers) discretises ``τ du/dt = -u + R I`` at ``dt``
    (LIF gain ``dt R / τ``, IF gain ``dt R``); "norse" ignores ``r`` -- Norse writes IF with r = 1
    and runs it as ``u += x`` whatever dt, and LIF as ``u += dt/τ (x - u)``."""
    meta = node_meta(node)
    reset = meta.get("reset", "hard")
    if _uniform(node.v_reset if node.v_reset is not None else 0.0, "v_reset", name) != 0.0:
        raise NIRExportError(
            f"NIR node {name}: v_reset != 0 is not supported (rmpsnn resets to 0 or subtracts)"
        )
    th = _finite_array(node.v_threshold, "v_threshold", name)
    uniform = th.size == 0 or np.allclose(th, th.flat[0])
    v_th = float(th.flat[0]) if uniform else torch.as_tensor(th, dtype=torch.float32)
    v_init = meta.get("v_init", "none")
    v_init = None if v_init in ("none", None) else ("half" if v_init == "half" else float(v_init) * v_th)
    r = 1.0 if convention == "norse" else _uniform(node.r, "r", name)
    if isinstance(node, nir.LIF):
        if _uniform(node.v_leak, "v_leak", name) != 0.0:
            raise NIRExportError(f"NIR node {name}: v_leak != 0 is not supported")
        tau = _uniform(node.tau, "tau", name)
        if tau <= 0:
            raise NIRExportError(f"NIR node {name}: tau={tau:g}; a time constant must be > 0")
        beta = 1.0 - dt / tau  # forward Euler: u[t] = (1 - dt/τ) u[t-1] + (dt R / τ) I[t]
        if not 0.0 <= beta <= 1.0:
            raise NIRExportError(
                f"NIR node {name}: tau={tau:g} is shorter than the time step dt={dt:g} (decay "
                f"1 - dt/tau = {beta:g}); pass the dt the graph was made for, e.g. from_nir(path, "
                f"target='snntorch') (dt=1e-4) or target='norse' (dt=1e-3)"
            )
        gain = dt * r / tau
        neuron = LIF(tau=beta, v_th=v_th, reset=reset)
    else:
        gain = 1.0 if convention == "norse" else dt * r
        neuron = IF(v_th=v_th, reset=reset, v_init=v_init)
    return neuron if abs(gain - 1.0) < 1e-6 else nn.Sequential(_Scale(gain), neuron)


def _node_module(name: str, node, dt: float, convention: str = "rmpsnn") -> nn.Module:
    """The rmpsnn module for one NIR node; ``dt`` is the step the graph's parameters were made for
    and ``convention`` how its producer meant neuron input gains (see :func:`_neuron_module`)."""
    nir = nir_package()
    if isinstance(node, nir.Conv2d):
        return _conv_module(name, node)
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _linear_module(name, node, nir)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return _pool_module(name, node, nir)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)  # NIR dims exclude the batch
        return TimeFolded(nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end))
    if isinstance(node, (nir.LIF, nir.IF)):
        return _neuron_module(name, node, dt, convention, nir)
    if isinstance(node, nir.I):
        gain = dt * _uniform(node.r, "r", name)
        readout = OutputIntegrator(node_meta(node).get("readout", "final"))
        return readout if abs(gain - 1.0) < 1e-6 else nn.Sequential(_Scale(gain), readout)
    if isinstance(node, nir.Scale):
        return _Scale(_tensor(node.scale, "scale", name))
    raise NIRExportError(f"NIR node {name}: {type(node).__name__} is not supported by rmpsnn's importer")


class _Scale(nn.Module):
    """Multiply by a constant (a number, or one value per neuron of the per-sample shape)."""

    def __init__(self, gain):
        super().__init__()
        self.register_buffer("gain", torch.as_tensor(gain, dtype=torch.float32))

    def forward(self, x):
        return x * self.gain


def _read_graph(graph):
    nir = nir_package()
    if not isinstance(graph, (str, Path)):
        return graph
    path = Path(graph)
    if not path.is_file():
        raise NIRExportError(f"NIR file {path} not found")
    try:
        return nir.read(str(path))
    except Exception as e:  # h5py and nir raise many types for a damaged or foreign file
        raise NIRExportError(
            f"{path}: not a readable NIR file ({type(e).__name__}: {e}); it may be truncated or "
            f"not written by a NIR exporter"
        ) from e


def _topological_order(graph, inputs: dict, in_name: str, out_name: str) -> list[str]:
    """Kahn's algorithm over the compute nodes."""
    done, order = {in_name}, []
    pending = [k for k in graph.nodes if k not in (in_name, out_name)]
    while pending:
        ready = [k for k in pending if all(i in done for i in inputs.get(k, []))]
        if not ready:
            raise NIRExportError(f"NIR graph has a cycle or dangling inputs among {pending[:5]}")
        for k in ready:
            order.append(k)
            done.add(k)
            pending.remove(k)
    return order


MAX_TIMESTEPS = 1_000_000  # a graph's stored step count beyond this is a damaged or crafted file


def _graph_timesteps(meta: dict) -> int:
    steps = meta.get("timesteps", 1)
    if isinstance(steps, (bool, str)) or not isinstance(steps, (int, float, np.integer, np.floating)):
        raise NIRExportError(f"the graph's metadata timesteps={steps!r} is not a number")
    if not (np.isfinite(steps) and steps == int(steps) and 1 <= steps <= MAX_TIMESTEPS):
        raise NIRExportError(
            f"the graph's metadata timesteps={steps!r} must be a whole number from 1 to {MAX_TIMESTEPS}; "
            f"run the network with an explicit number of steps: net(x, timesteps=T)"
        )
    return int(steps)


def _warn_ambiguous_if(graph, order: list[str], dts: dict, conventions: dict, nir) -> None:
    """An IF node with r = 1 read at a dt < 1 gets an input gain dt: right for snnTorch/SpikingJelly
    graphs, wrong for Norse's (IF as u += x).  Say so instead of silently never spiking."""
    suspects = [
        k
        for k in order
        if isinstance(graph.nodes[k], nir.IF)
        and conventions[k] == "rmpsnn"
        and not node_meta(graph.nodes[k])
        and dts[k] != 1.0
        and np.allclose(np.asarray(graph.nodes[k].r, np.float64), 1.0)
    ]
    if suspects:
        gain = dts[suspects[0]]
        warnings.warn(
            f"NIR import: IF node(s) {', '.join(suspects[:3])} have r=1 and are read at dt={gain:g}, "
            f"an input gain of {gain:g}. A graph written by Norse means u += x: import it with "
            f"from_nir(graph, target='norse')",
            stacklevel=3,
        )


def from_nir(graph, *, dt: float | None = None, target: str | None = None) -> NIRNetwork:
    """Build an rmpsnn network from a NIR graph (or a path to a ``.nir`` file).  Soft reset,
    the read-out mode and the number of steps are restored from rmpsnn's metadata.

    ``dt`` is the time step the graph's continuous-time parameters were written for: rmpsnn's own
    graphs say it in their metadata (default 1).  For a graph written by or for another tool give
    ``target="snntorch" | "spikingjelly" | "norse"``: its dt (:data:`TARGET_DT`) and its reading of
    the neurons' input gain ``r`` (Norse ignores ``r``: IF is ``u += x`` at any dt)."""
    nir = nir_package()
    if target is not None or dt is not None:
        dt = resolve_dt(dt, target)
    graph = _read_graph(graph)
    inputs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        inputs.setdefault(dst, []).append(src)
    in_names = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    out_names = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(in_names) != 1 or len(out_names) != 1:
        raise NIRExportError("rmpsnn imports graphs with exactly one Input and one Output node")
    rename = {in_names[0]: "input"}
    order = _topological_order(graph, inputs, in_names[0], out_names[0])
    graph_meta = node_meta(graph)
    ours = graph_meta.get("exporter") == "rmpsnn"
    dts = {
        k: float(dt if dt is not None else node_meta(graph.nodes[k]).get("dt", graph_meta.get("dt", DT)))
        for k in order
    }
    # rmpsnn's own nodes carry their dt and gains; other nodes follow the target's convention
    conventions = {
        k: "rmpsnn" if ours or node_meta(graph.nodes[k]) or target != "norse" else "norse" for k in order
    }
    _warn_ambiguous_if(graph, order, dts, conventions, nir)
    modules = {k: _imported(k, graph.nodes[k], dts[k], conventions[k]) for k in order}
    ins = {k: [rename.get(i, i) for i in inputs.get(k, [])] for k in order}
    if out_names[0] not in inputs:
        raise NIRExportError(f"the graph's Output node {out_names[0]} has no input edge")
    net = NIRNetwork(
        modules,
        ins,
        order,
        [rename.get(i, i) for i in inputs[out_names[0]]],
        _graph_timesteps(graph_meta),
        graph_meta.get("input", "static"),
    )
    _check_layers_fit(net, graph.nodes[in_names[0]])
    return net


def _imported(name: str, node, dt: float, convention: str) -> nn.Module:
    """:func:`_node_module`, with any malformed parameter (an array where a number belongs, a
    number out of range) reported as one line naming the node."""
    try:
        return _node_module(name, node, dt, convention)
    except NIRExportError:
        raise
    except (TypeError, ValueError, IndexError, RuntimeError, OverflowError, AttributeError) as e:
        detail = one_line(e)
        raise NIRExportError(
            f"NIR node {name} ({type(node).__name__}): malformed parameters ({type(e).__name__}: {detail})"
        ) from e


def _check_layers_fit(net: NIRNetwork, input_node) -> None:
    """Run one step of a zero input of the graph's declared input shape, so that layers that do not
    fit together fail here, named, rather than when the network is first run."""
    try:
        shape = [int(v) for v in np.asarray(next(iter(input_node.input_type.values()))).reshape(-1)]
    except (AttributeError, StopIteration, TypeError, ValueError):
        return  # no usable declared shape: nothing to check against
    if not shape or min(shape) < 1 or int(np.prod(shape)) > 1 << 24:
        return
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, *shape), timesteps=1)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        detail = one_line(e)
        raise NIRExportError(
            f"the graph's layers do not fit its input {shape} ({detail}); the graph is damaged or was not "
            f"written for this input"
        ) from e
