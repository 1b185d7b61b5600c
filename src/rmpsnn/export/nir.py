"""Export to and import from NIR, the Neuromorphic Intermediate Representation (nir.readthedocs.io)
that snnTorch, Norse, SpikingJelly, Lava, sinabs and neuromorphic chips read.

**Graph.**  Conv2d (with the following tdBN/BN folded into its weight and bias), Linear ->
``Affine``, AvgPool2d, global average pool -> ``AvgPool2d`` over the whole map, Flatten, LIF,
IF, the output integrator -> ``I``; a residual block becomes two edges into its second LIF
(NIR sums the inputs of a node).  Anything else (max-pool, dropout in training mode, custom
modules) raises :class:`NIRExportError` naming the module.

**Neuron semantics.**  NIR's neurons are continuous-time ODEs; rmpsnn's are discrete (one step
per time step).  With ``dt = 1`` (stored in the graph's metadata):

* LIF ``u[t] = β u[t-1] + x[t]`` (β = ``tau``, 0.25 by default) is the forward-Euler step of
  ``τ du/dt = (v_leak - u) + R I`` with ``τ = dt / (1 - β)``, ``R = τ / dt``, ``v_leak = 0``
  -- the mapping snnTorch and Norse use.  ``v_threshold`` = θ, ``v_reset = 0``.
* IF ``u[t] = u[t-1] + x[t]`` is ``du/dt = R I`` with ``R = 1``; the integrator likewise (``I``).
* **Reset.**  NIR's IF/LIF only know reset-to-``v_reset``.  The soft reset (``u -= θ`` on a
  spike) that RMP neurons depend on has no NIR equivalent, so exporting it is refused unless
  ``allow_lossy_reset=True``: then the node says ``v_reset = 0`` (what other tools will
  simulate -- a different network) and carries ``{"rmpsnn": {"reset": "soft"}}`` in its
  metadata, which :func:`from_nir` reads to restore the soft reset exactly.  A warning says so.

**Time.**  A static image is fed at every step (direct encoding); the number of steps, the
integrator's read-out (final potential or mean) and the surrogate gradient are in metadata.

**Converted SNNs** (:class:`rmpsnn.conversion.ConvertedSNN`) are exported from their
``torch.fx`` graph: each IF layer becomes ``IF`` (threshold θ, per channel if balanced so)
followed by ``Scale(θ)`` (the layer outputs spikes x θ), additions become summed edges, and
the accumulated read-out an ``I`` node; the initial potential (e.g. θ/2) is in metadata.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError, NIRExportError
from ..layers import TimeFolded, _TdBatchNorm, repeat_time
from ..neurons import IF, LIF, OutputIntegrator, SpikingNeuron

__all__ = ["NIRExportError", "NIRNetwork", "from_nir", "to_nir"]

DT = 1.0


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - nir is a dependency
        raise ImportError("NIR export needs the nir package: pip install nir") from e
    return nir


def _np(t) -> np.ndarray:
    return (
        t.detach().cpu().double().numpy().astype(np.float32)
        if torch.is_tensor(t)
        else np.asarray(t, np.float32)
    )


class _Builder:
    def __init__(self, shapes: dict, allow_lossy_reset: bool):
        self.nir = _nir()
        self.nodes, self.edges, self.shapes = {}, [], shapes
        self.allow_lossy = allow_lossy_reset
        self.lossy: list[str] = []
        self.pending_conv: str | None = None  # a conv node a following BN may fold into

    def add(self, name: str, node, inputs: list[str]) -> str:
        self.nodes[name] = node
        self.edges += [(i, name) for i in inputs]
        self.pending_conv = None
        return name

    # ------------------------------------------------------------------ modules
    def emit(self, m: nn.Module, name: str, inp: list[str]) -> list[str]:
        from ..models.spiking import SpikingBasicBlock, SpikingNet

        nir = self.nir
        if isinstance(m, SpikingNet):
            x = self.emit(m.stem_conv, f"{name}stem_conv", inp)
            x = self.emit(m.stem_bn, f"{name}stem_bn", x)
            x = self.emit(m.stem_lif, f"{name}stem_lif", x)
            x = self.emit(m.body, f"{name}body.", x)
            x = self.emit(m.head, f"{name}head.", x)
            return self.emit(m.readout, f"{name}readout", x)
        if isinstance(m, SpikingBasicBlock):
            a = inp
            for child in ("conv1", "bn1", "lif1", "conv2", "bn2"):
                a = self.emit(getattr(m, child), f"{name}{child}", a)
            b = self.emit(m.shortcut, f"{name}shortcut.", inp)
            return self.emit(m.lif2, f"{name}lif2", a + b)
        if isinstance(m, (nn.Sequential, TimeFolded)):
            x = inp
            for child_name, child in m.named_children():
                x = self.emit(
                    child, f"{name}{child_name}" if not list(child.children()) else f"{name}{child_name}.", x
                )
            return x
        if isinstance(m, nn.Identity) or (isinstance(m, nn.Dropout) and not m.training):
            return inp
        key = name.rstrip(".")
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise NIRExportError(f"{key}: only zero padding given as numbers can be exported")
            in_shape = self.shapes[id(m)][0]
            bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
            node = nir.Conv2d(
                input_shape=tuple(in_shape[-2:]),
                weight=_np(m.weight),
                stride=m.stride,
                padding=m.padding,
                dilation=m.dilation,
                groups=m.groups,
                bias=_np(bias),
            )
            out = self.add(key, node, inp)
            self.pending_conv = key
            return [out]
        if isinstance(m, (_TdBatchNorm, nn.BatchNorm2d)):
            if self.pending_conv is None or inp != [self.pending_conv]:
                raise NIRExportError(
                    f"{key}: a batch norm can only be exported folded into the conv before it"
                )
            if m.training or m.running_mean is None:
                raise NIRExportError(f"{key}: call model.eval() first (BN folds with its running statistics)")
            gain = (m.alpha * m.v_th) if isinstance(m, _TdBatchNorm) else 1.0
            w = (m.weight if m.weight is not None else torch.ones(m.num_features)) * gain
            b = m.bias if m.bias is not None else torch.zeros(m.num_features)
            s = w / torch.sqrt(m.running_var + m.eps)
            conv = self.nodes[self.pending_conv]
            wt = torch.as_tensor(conv.weight, dtype=torch.float64)
            bt = torch.as_tensor(conv.bias, dtype=torch.float64)
            conv.weight = _np(wt * s.double().view(-1, 1, 1, 1))
            conv.bias = _np((bt - m.running_mean.double()) * s.double() + b.double())
            return inp  # the conv node now computes conv + BN
        if isinstance(m, nn.Linear):
            bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
            return [self.add(key, nir.Affine(weight=_np(m.weight), bias=_np(bias)), inp)]
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            if isinstance(m, nn.AdaptiveAvgPool2d):
                h, w = self.shapes[id(m)][0][-2:]
                oh, ow = self.shapes[id(m)][1][-2:]
                if h % oh or w % ow:
                    raise NIRExportError(f"{key}: adaptive pooling {h}x{w} -> {oh}x{ow} is not a fixed pool")
                k, stride, pad = (h // oh, w // ow), (h // oh, w // ow), (0, 0)
            else:
                if m.ceil_mode or not m.count_include_pad:
                    raise NIRExportError(f"{key}: AvgPool2d with ceil_mode or count_include_pad=False")
                k, stride, pad = (_pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding))
            node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(stride), padding=np.array(pad))
            return [self.add(key, node, inp)]
        if isinstance(m, nn.Flatten):
            in_shape = self.shapes[id(m)][0]
            # NIR dims exclude the batch: torch's start_dim=1 (after the batch) is NIR's 0
            node = nir.Flatten(
                input_type={"input": np.array(in_shape)}, start_dim=m.start_dim - 1, end_dim=m.end_dim
            )
            return [self.add(key, node, inp)]
        if isinstance(m, SpikingNeuron):
            return [self.add(key, self._neuron(m, key), inp)]
        if isinstance(m, OutputIntegrator):
            size = self.shapes[id(m)][0]
            meta = {"rmpsnn": {"readout": m.readout, "dt": DT}}
            return [self.add(key, nir.I(r=np.ones(size, np.float32), metadata=meta), inp)]
        raise NIRExportError(
            f"{key}: {type(m).__name__} cannot be expressed in NIR by rmpsnn's exporter (supported: Conv2d, "
            f"Linear, (tdBN-)BatchNorm after a conv, AvgPool2d, global average pool, Flatten, LIF, IF, "
            f"OutputIntegrator, and the spiking ResNet/VGG/cpu_net models)"
        )

    def _check_reset(self, reset: str, key: str) -> None:
        """Soft reset is exported only on request, and then recorded as lossy (see the module doc)."""
        if reset != "soft":
            return
        if not self.allow_lossy:
            raise NIRExportError(
                f"{key}: soft reset (u -= threshold on a spike, the RMP neuron) has no NIR equivalent -- "
                f"NIR's IF/LIF reset to v_reset, and other tools would simulate a different network. "
                f"Pass allow_lossy_reset=True to export anyway: rmpsnn's from_nir restores the soft "
                f"reset from the node metadata, other consumers will reset to 0"
            )
        self.lossy.append(key)

    def converted_if(self, m, key: str, inp: list[str]) -> list[str]:
        """A conversion ``IFNode`` (output = spike · θ): NIR ``IF`` then ``Scale(θ)``."""
        nir = self.nir
        if m.bias is not None:
            raise NIRExportError(
                f"{key}: this IF layer keeps a calibration bias of its own (nothing in front of it could "
                f"absorb it), which NIR's IF cannot express; convert with calibrate='none', or put a "
                f"Conv/Linear layer before this activation in the ANN"
            )
        size = self.shapes[id(m)][0]
        th = m.threshold.detach().double()
        if th.ndim == 1:  # per channel
            th = th.reshape(-1, *([1] * (len(size) - 1)))
        v_th = _per_neuron(th, size)
        meta = {"rmpsnn": {"reset": m.reset, "dt": DT, "v_init": "none" if m.v_init is None else m.v_init}}
        self._check_reset(m.reset, key)
        zeros = np.zeros(size, np.float32)
        self.add(
            key, nir.IF(r=np.ones(size, np.float32), v_threshold=v_th, v_reset=zeros, metadata=meta), inp
        )
        return [self.add(f"{key}.scale", nir.Scale(scale=v_th.copy()), [key])]

    def _neuron(self, m: SpikingNeuron, key: str):
        nir = self.nir
        size = self.shapes[id(m)][0]
        th = m.v_th if torch.is_tensor(m.v_th) else torch.tensor(float(m.v_th))
        v_th = _per_neuron(th, size)
        meta = {"rmpsnn": {"reset": m.reset, "dt": DT, "surrogate": repr(m.surrogate)}}
        self._check_reset(m.reset, key)
        zeros = np.zeros(size, np.float32)
        if isinstance(m, LIF):
            beta = float(m.tau)
            tau = DT / (1.0 - beta)
            meta["rmpsnn"]["decay"] = beta
            return nir.LIF(
                tau=np.full(size, tau, np.float32),
                r=np.full(size, tau / DT, np.float32),
                v_leak=zeros,
                v_threshold=v_th,
                v_reset=zeros,
                metadata=meta,
            )
        if isinstance(m, IF):
            return nir.IF(r=np.ones(size, np.float32), v_threshold=v_th, v_reset=zeros, metadata=meta)
        raise NIRExportError(f"{key}: neuron type {type(m).__name__} is not supported")


def _per_neuron(values, size) -> np.ndarray:
    """A parameter (scalar or broadcastable) as a float32 array of one sample's shape."""
    return np.broadcast_to(_np(values), size).astype(np.float32).copy()


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


def _record_shapes(model: nn.Module, sample: torch.Tensor) -> dict:
    """Per-sample input and output shapes of every module (time and batch dimensions removed)."""
    shapes, handles = {}, []

    def hook(m, inputs, out):
        x = inputs[0]
        # modules inside TimeFolded see [T*B, ...]; the others [T, B, ...] or [B, ...]
        if isinstance(m, (SpikingNeuron, OutputIntegrator)) or (x.ndim == 5 and isinstance(m, _TdBatchNorm)):
            lead = 2
        else:
            lead = 1
        shapes[id(m)] = (
            tuple(x.shape[lead:]),
            tuple(out.shape[lead if not isinstance(m, OutputIntegrator) else 1 :]),
        )

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _emit_converted(snn, sample: torch.Tensor, allow_lossy_reset: bool) -> _Builder:
    """Walk the ``torch.fx`` graph of a converted SNN (:class:`rmpsnn.conversion.ConvertedSNN`)."""
    import operator

    from torch.fx.passes.shape_prop import ShapeProp

    from ..conversion.nodes import IFNode

    gm = snn.graph_module
    snn.reset_state()
    for m in snn.if_nodes:
        m.chunk = 1
    with torch.no_grad():
        ShapeProp(gm).propagate(sample)
    snn.reset_state()
    shapes = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            src = node.args[0]
            shapes[id(gm.get_submodule(node.target))] = (
                tuple(src.meta["tensor_meta"].shape[1:]),
                tuple(node.meta["tensor_meta"].shape[1:]),
            )
    b = _Builder(shapes, allow_lossy_reset)
    b.nodes["input"] = b.nir.Input(input_type={"input": np.array(sample.shape[1:])})
    values: dict[str, list[str]] = {}
    last: list[str] = []
    for node in gm.graph.nodes:
        key = (
            f"layer{node.target}"
            if node.op == "call_module" and str(node.target).isdigit()
            else str(node.target)
        )
        if node.op == "placeholder":
            values[node.name] = ["input"]
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            ins = values[node.args[0].name]
            values[node.name] = b.converted_if(m, key, ins) if isinstance(m, IFNode) else b.emit(m, key, ins)
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            values[node.name] = (
                values[node.args[0].name] + values[node.args[1].name]
            )  # NIR sums a node's inputs
        elif (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target == "flatten"
        ):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            in_shape = tuple(node.args[0].meta["tensor_meta"].shape[1:])
            flat = b.nir.Flatten(
                input_type={"input": np.array(in_shape)}, start_dim=int(start) - 1, end_dim=-1
            )
            values[node.name] = [b.add(node.name, flat, values[node.args[0].name])]
        elif node.op == "output":
            last = values[node.args[0].name]
        else:
            raise NIRExportError(
                f"converted graph node {node.name} ({node.op} {node.target}) cannot be exported"
            )
    # the converted SNN accumulates its last layer over time (the read-out): an integrator
    size = tuple(gm.graph.find_nodes(op="output")[0].args[0].meta["tensor_meta"].shape[1:])
    meta = {"rmpsnn": {"readout": "final", "dt": DT}}
    b.nodes["readout"] = b.nir.I(r=np.ones(size, np.float32), metadata=meta)
    b.edges += [(x, "readout") for x in last]
    b.nodes["output"] = b.nir.Output(output_type={"output": np.array(size)})
    b.edges.append(("readout", "output"))
    return b


def to_nir(
    model: nn.Module,
    sample_input: torch.Tensor,
    path: str | Path | None = None,
    *,
    allow_lossy_reset: bool = False,
    timesteps: int | None = None,
):
    """The NIR graph of ``model`` (an rmpsnn spiking model, an ``nn.Sequential`` of its layers, or
    a converted SNN -- then ``timesteps`` says how many steps the graph is meant to run);
    ``sample_input`` (one batch as the model takes it) fixes the shapes.  With ``path`` the graph
    is also written (HDF5, ``nir.write``).  Returns the ``nir.NIRGraph``."""
    from ..conversion import ConvertedSNN

    nir = _nir()
    if isinstance(model, ConvertedSNN):
        if timesteps is None:
            raise InputError("to_nir of a converted SNN needs timesteps= (how many steps it runs)")
        b = _emit_converted(model, sample_input, allow_lossy_reset)
        meta = {"rmpsnn": {"dt": DT, "timesteps": int(timesteps), "input": "static"}}
        return _finish(nir, b, meta, path)
    was_training = model.training
    model.eval()
    try:
        shapes = _record_shapes(model, sample_input)
        b = _Builder(shapes, allow_lossy_reset)
        static = sample_input.ndim == 4
        in_shape = tuple(sample_input.shape[1:] if static else sample_input.shape[2:])
        b.nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
        last = b.emit(model, "", ["input"])
        out_shape = shapes[id(model)][1] if id(model) in shapes else ()
        b.nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
        b.edges += [(x, "output") for x in last]
    finally:
        model.train(was_training)
    if timesteps is None:
        timesteps = getattr(model, "timesteps", None) or (sample_input.shape[0] if not static else 1)
    meta = {"rmpsnn": {"dt": DT, "timesteps": int(timesteps), "input": "static" if static else "events"}}
    return _finish(nir, b, meta, path)


def _finish(nir, b: _Builder, meta: dict, path):
    meta["rmpsnn"]["exporter"] = "rmpsnn"
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta)
    if b.lossy:
        warnings.warn(
            f"NIR export: {len(b.lossy)} layers ({', '.join(b.lossy[:3])}{', ...' * (len(b.lossy) > 3)}) "
            f"use soft reset, written as v_reset=0 with the soft reset in the node metadata. "
            f"rmpsnn.export.from_nir restores it; other NIR consumers will simulate reset-to-zero neurons "
            f"(a different network).",
            stacklevel=3,
        )
    if path is not None:
        nir.write(str(path), graph)
    return graph


# ---------------------------------------------------------------------------- import
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
        if x.ndim == 4:  # a static batch: the same input at every step (direct encoding)
            x = repeat_time(x, timesteps or self.timesteps)
        values = {"input": x}
        for name in self.order:
            ins = [values[i] for i in self.inputs[name]]
            h = ins[0] if len(ins) == 1 else _Sum()(*ins)
            values[name] = self.layers[name.replace(".", "__")](h)
        outs = [values[o] for o in self.output]
        return outs[0] if len(outs) == 1 else _Sum()(*outs)


def _uniform(a, what: str, node: str) -> float:
    a = np.asarray(a, np.float64)
    if a.size and not np.allclose(a, a.flat[0]):
        raise NIRExportError(f"NIR node {node}: per-neuron {what} is not supported by rmpsnn's neurons")
    return float(a.flat[0]) if a.size else 0.0


def _node_module(name: str, node) -> nn.Module:
    nir = _nir()
    meta = (getattr(node, "metadata", None) or {}).get("rmpsnn", {})
    if isinstance(node, nir.Conv2d):
        w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
        conv = nn.Conv2d(
            w.shape[1] * int(node.groups),
            w.shape[0],
            tuple(w.shape[2:]),
            stride=_pair(node.stride),
            padding=_pair(node.padding),
            dilation=_pair(node.dilation),
            groups=int(node.groups),
        )
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32))
        return TimeFolded(conv)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        lin.weight.data.copy_(w)
        if isinstance(node, nir.Affine):
            lin.bias.data.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32))
        return TimeFolded(lin)
    if isinstance(node, nir.AvgPool2d):
        k, s, p = (
            tuple(int(v) for v in np.atleast_1d(a)) for a in (node.kernel_size, node.stride, node.padding)
        )
        return TimeFolded(
            nn.AvgPool2d(k if len(k) > 1 else k[0], s if len(s) > 1 else s[0], p if len(p) > 1 else p[0])
        )
    if isinstance(node, nir.Flatten):
        return TimeFolded(nn.Flatten(int(node.start_dim) + 1, int(node.end_dim)))
    if isinstance(node, (nir.LIF, nir.IF)):
        reset = meta.get("reset", "hard")
        if _uniform(node.v_reset, "v_reset", name) != 0.0:
            raise NIRExportError(
                f"NIR node {name}: v_reset != 0 is not supported (rmpsnn resets to 0 or subtracts)"
            )
        th = np.asarray(node.v_threshold, np.float64)
        uniform = th.size == 0 or np.allclose(th, th.flat[0])
        v_th = float(th.flat[0]) if uniform else torch.as_tensor(th, dtype=torch.float32)
        v_init = meta.get("v_init", "none")
        v_init = None if v_init in ("none", None) else ("half" if v_init == "half" else float(v_init) * v_th)
        if isinstance(node, nir.LIF):
            if _uniform(node.v_leak, "v_leak", name) != 0.0:
                raise NIRExportError(f"NIR node {name}: v_leak != 0 is not supported")
            dt = float(meta.get("dt", DT))
            tau = _uniform(node.tau, "tau", name)
            beta = 1.0 - dt / tau
            gain = dt * _uniform(node.r, "r", name) / tau
            neuron = LIF(tau=beta, v_th=v_th, reset=reset)
        else:
            gain = float(meta.get("dt", DT)) * _uniform(node.r, "r", name)
            neuron = IF(v_th=v_th, reset=reset, v_init=v_init)
        return neuron if abs(gain - 1.0) < 1e-6 else nn.Sequential(_Scale(gain), neuron)
    if isinstance(node, nir.I):
        return OutputIntegrator(meta.get("readout", "final"))
    if isinstance(node, nir.Scale):
        return _Scale(torch.as_tensor(np.asarray(node.scale), dtype=torch.float32))
    raise NIRExportError(f"NIR node {name}: {type(node).__name__} is not supported by rmpsnn's importer")


class _Scale(nn.Module):
    """Multiply by a constant (a number, or one value per neuron of the per-sample shape)."""

    def __init__(self, gain):
        super().__init__()
        self.register_buffer("gain", torch.as_tensor(gain, dtype=torch.float32))

    def forward(self, x):
        return x * self.gain


def from_nir(graph) -> NIRNetwork:
    """Build an rmpsnn network from a NIR graph (or a path to a ``.nir`` file).  Soft reset,
    the read-out mode and the number of steps are restored from rmpsnn's metadata."""
    nir = _nir()
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        if not path.is_file():
            raise NIRExportError(f"NIR file {path} not found")
        try:
            graph = nir.read(str(path))
        except Exception as e:  # h5py and nir raise many types for a damaged or foreign file
            raise NIRExportError(
                f"{path}: not a readable NIR file ({type(e).__name__}: {e}); it may be truncated or "
                f"not written by a NIR exporter"
            ) from e
    inputs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        inputs.setdefault(dst, []).append(src)
    in_names = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    out_names = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(in_names) != 1 or len(out_names) != 1:
        raise NIRExportError("rmpsnn imports graphs with exactly one Input and one Output node")
    # Kahn's algorithm over the compute nodes
    rename = {in_names[0]: "input"}
    done, order = {in_names[0]}, []
    pending = [k for k in graph.nodes if k not in (in_names[0], out_names[0])]
    while pending:
        ready = [k for k in pending if all(i in done for i in inputs.get(k, []))]
        if not ready:
            raise NIRExportError(f"NIR graph has a cycle or dangling inputs among {pending[:5]}")
        for k in ready:
            order.append(k)
            done.add(k)
            pending.remove(k)
    modules = {k: _node_module(k, graph.nodes[k]) for k in order}
    ins = {k: [rename.get(i, i) for i in inputs.get(k, [])] for k in order}
    meta = (getattr(graph, "metadata", None) or {}).get("rmpsnn", {})
    return NIRNetwork(
        modules,
        ins,
        order,
        [rename.get(i, i) for i in inputs[out_names[0]]],
        int(meta.get("timesteps", 1)),
        meta.get("input", "static"),
    )
