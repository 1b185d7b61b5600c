"""Export: an rmpsnn model or converted SNN as a NIR graph (:func:`to_nir`); the conventions are
in the package docstring (:mod:`rmpsnn.export.nir`)."""

from __future__ import annotations

import operator
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ...conversion import ConvertedSNN, IFNode
from ...errors import InputError, NIRExportError
from ...io import atomic_write
from ...layers import TdBatchNorm, TimeFolded
from ...models.spiking import SpikingBasicBlock, SpikingNet
from ...neurons import Neuron, OutputIntegrator, SpikingNeuron
from .common import DT, GraphEdit, as_float32, nir_package, resolve_dt, whole_pair
from .portable import (
    fold_scales,
    make_portable,
    refuse_initial_potentials,
    sum_pools_for_norse,
    unit_thresholds,
)

__all__ = ["GraphBuilder", "to_nir"]


class GraphBuilder(GraphEdit):
    """The NIR graph of a model under construction: one node per exported layer, edges in order."""

    def __init__(self, shapes: dict, allow_lossy_reset: bool, dt: float = DT):
        super().__init__()
        self.nir = nir_package()
        self.dt = dt
        self.shapes = shapes
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
            return self._conv(m, key, inp)
        if isinstance(m, (TdBatchNorm, nn.BatchNorm2d)):
            return self._fold_batch_norm(m, key, inp)
        if isinstance(m, nn.Linear):
            bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
            return [self.add(key, nir.Affine(weight=as_float32(m.weight), bias=as_float32(bias)), inp)]
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return [self.add(key, self._avg_pool(m, key), inp)]
        if isinstance(m, nn.Flatten):
            in_shape = self.shapes[id(m)][0]
            node = _flatten(nir, in_shape, m.start_dim, m.end_dim)
            return [self.add(key, node, inp)]
        if isinstance(m, SpikingNeuron):
            return [self.add(key, self._neuron(m, key), inp)]
        if isinstance(m, Neuron):
            _refuse_neuron(m, key)
        if isinstance(m, OutputIntegrator):
            size = self.shapes[id(m)][0]
            meta = {"rmpsnn": {"readout": m.readout, "dt": self.dt}}
            return [self.add(key, nir.I(r=np.full(size, 1.0 / self.dt, np.float32), metadata=meta), inp)]
        raise NIRExportError(
            f"{key}: {type(m).__name__} cannot be expressed in NIR by rmpsnn's exporter (supported: Conv2d, "
            f"Linear, (tdBN-)BatchNorm after a conv, AvgPool2d, global average pool, Flatten, LIF, IF, "
            f"OutputIntegrator, and the spiking ResNet/VGG/cpu_net models)"
        )

    def _conv(self, m: nn.Conv2d, key: str, inp: list[str]) -> list[str]:
        """A Conv2d node; a batch norm right after it folds into it (:meth:`_fold_batch_norm`)."""
        nir = self.nir
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise NIRExportError(f"{key}: only zero padding given as numbers can be exported")
        in_shape = self.shapes[id(m)][0]
        bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
        node = nir.Conv2d(
            input_shape=tuple(in_shape[-2:]),
            weight=as_float32(m.weight),
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=as_float32(bias),
        )
        out = self.add(key, node, inp)
        self.pending_conv = key
        return [out]

    def _fold_batch_norm(self, m: nn.Module, key: str, inp: list[str]) -> list[str]:
        """Fold a (tdBN-)batch norm into the conv node before it (NIR has no batch norm)."""
        if self.pending_conv is None or inp != [self.pending_conv]:
            raise NIRExportError(f"{key}: a batch norm can only be exported folded into the conv before it")
        if m.training or m.running_mean is None:
            raise NIRExportError(f"{key}: call model.eval() first (BN folds with its running statistics)")
        gain = (m.alpha * m.v_th) if isinstance(m, TdBatchNorm) else 1.0
        w = (m.weight if m.weight is not None else torch.ones(m.num_features)) * gain
        b = m.bias if m.bias is not None else torch.zeros(m.num_features)
        s = w / torch.sqrt(m.running_var + m.eps)
        conv = self.nodes[self.pending_conv]
        wt = torch.as_tensor(conv.weight, dtype=torch.float64)
        bt = torch.as_tensor(conv.bias, dtype=torch.float64)
        conv.weight = as_float32(wt * s.double().view(-1, 1, 1, 1))
        conv.bias = as_float32((bt - m.running_mean.double()) * s.double() + b.double())
        return inp  # the conv node now computes conv + BN

    def _avg_pool(self, m: nn.Module, key: str):
        """An AvgPool2d node (an adaptive pool only where it is a fixed pool for this shape)."""
        nir = self.nir
        if isinstance(m, nn.AdaptiveAvgPool2d):
            h, w = self.shapes[id(m)][0][-2:]
            oh, ow = self.shapes[id(m)][1][-2:]
            if h % oh or w % ow:
                raise NIRExportError(f"{key}: adaptive pooling {h}x{w} -> {oh}x{ow} is not a fixed pool")
            k, stride, pad = (h // oh, w // ow), (h // oh, w // ow), (0, 0)
        else:
            if m.ceil_mode or not m.count_include_pad:
                raise NIRExportError(f"{key}: AvgPool2d with ceil_mode or count_include_pad=False")
            k, stride, pad = (
                whole_pair(m.kernel_size),
                whole_pair(m.stride or m.kernel_size),
                whole_pair(m.padding),
            )
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(stride), padding=np.array(pad))

    def _check_reset(self, reset: str, key: str) -> None:
        """Soft reset is exported only on request, and then recorded as lossy (see the module doc)."""
        if reset != "soft":
            return
        if not self.allow_lossy:
            raise NIRExportError(
                f"{key}: soft reset (u -= threshold on a spike, the RMP neuron) has no NIR equivalent -- "
                f"NIR's IF/LIF reset to v_reset, and other tools would simulate a different network. "
                f"Pass allow_lossy_reset=True (rmpsnn export --allow-lossy-reset) to export anyway: "
                f"rmpsnn's from_nir restores the soft reset from the node metadata, other consumers "
                f"will reset to 0"
            )
        self.lossy.append(key)

    def converted_if(self, m, key: str, inp: list[str]) -> list[str]:
        """A conversion ``IFNode`` (output = spike · θ): NIR ``IF`` then ``Scale(θ)``."""
        nir = self.nir
        if m.signed:
            raise NIRExportError(
                f"{key}: signed IF neurons (negative spikes) have no NIR equivalent; convert with "
                f"signed=False to export"
            )
        if m.bias is not None:
            raise NIRExportError(
                f"{key}: this IF layer keeps a calibration bias of its own (nothing in front of it could "
                f"absorb it), which NIR's IF cannot express; convert with calibrate='none', or put a "
                f"Conv/Linear layer before this activation in the ANN"
            )
        size = self.shapes[id(m)][0]
        v_th = _thresholds(m.v_th.detach(), size, key)
        meta = {
            "rmpsnn": {"reset": m.reset, "dt": self.dt, "v_init": "none" if m.v_init is None else m.v_init}
        }
        self._check_reset(m.reset, key)
        zeros = np.zeros(size, np.float32)
        r = np.full(size, 1.0 / self.dt, np.float32)
        self.add(key, nir.IF(r=r, v_threshold=v_th, v_reset=zeros, metadata=meta), inp)
        return [self.add(f"{key}.scale", nir.Scale(scale=v_th.copy()), [key])]

    def _neuron(self, m: SpikingNeuron, key: str):
        """IF or LIF by the neuron's parameters (not its class): β = 1 is IF, else LIF.

        Discretised with forward Euler at step ``dt``: LIF ``u[t] = β u[t-1] + x[t]`` is
        ``τ du/dt = -u + R I`` with ``τ = dt / (1 - β)`` and ``R = 1 / (1 - β)``; IF
        ``u[t] = u[t-1] + x[t]`` is ``du/dt = R I`` with ``R = 1 / dt``."""
        nir = self.nir
        size = self.shapes[id(m)][0]
        tau, th = _trained_values(m, size)
        v_th = _thresholds(th, size, key)
        meta = {"rmpsnn": {"reset": m.reset, "dt": self.dt, "surrogate": repr(m.surrogate)}}
        self._check_reset(m.reset, key)
        zeros = np.zeros(size, np.float32)
        beta = _per_neuron(tau, size).astype(np.float64)
        if (beta >= 1.0).all():  # no leak: an integrate-and-fire neuron
            return nir.IF(
                r=np.full(size, 1.0 / self.dt, np.float32), v_threshold=v_th, v_reset=zeros, metadata=meta
            )
        if (beta >= 1.0).any():
            raise NIRExportError(
                f"{key}: a leak of exactly 1 (IF) in some channels and < 1 in others has no NIR node"
            )
        meta["rmpsnn"]["decay"] = float(beta.flat[0]) if np.all(beta == beta.flat[0]) else beta.tolist()
        return nir.LIF(
            tau=(self.dt / (1.0 - beta)).astype(np.float32),
            r=(1.0 / (1.0 - beta)).astype(np.float32),
            v_leak=zeros,
            v_threshold=v_th,
            v_reset=zeros,
            metadata=meta,
        )


def _flatten(nir, in_shape: tuple, start_dim: int, end_dim: int):
    """NIR ``Flatten`` of torch's ``Flatten(start_dim, end_dim)`` on ``[B, *in_shape]``, written
    with negative dims.  NIR counts dims without the batch (so torch's 1 is NIR's 0), but snnTorch
    and Norse pass NIR's dims to ``torch.nn.Flatten`` as they are; counted from the end, both
    readings agree."""
    full = len(in_shape) + 1
    start = start_dim - full if start_dim >= 0 else start_dim
    end = end_dim - full if end_dim >= 0 else end_dim
    if start <= -full:
        raise NIRExportError("Flatten over the batch dimension cannot be exported")
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)


def _thresholds(th: torch.Tensor, size: tuple, key: str) -> np.ndarray:
    """A neuron's threshold as one value per neuron of the per-sample shape ``size``, read as the
    neuron reads it: a 1-D vector of length ``C`` is one threshold per channel (``size[0]``, the
    channel axis after a convolution), anything else broadcasts from the right."""
    th = th.detach().double()
    if th.ndim == 1 and len(size) > 1:
        if th.numel() != size[0]:
            raise NIRExportError(
                f"{key}: {th.numel()} thresholds for a layer of {size[0]} channels (shape {list(size)}); "
                f"give one per channel or one number"
            )
        th = th.reshape(-1, *([1] * (len(size) - 1)))
    try:
        return _per_neuron(th, size)
    except ValueError as e:
        raise NIRExportError(
            f"{key}: thresholds of shape {list(th.shape)} do not fit the layer's shape {list(size)}"
        ) from e


def _trained_values(m: SpikingNeuron, size: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """The leak and threshold a LIF/IF layer runs with now -- learned ones (PLIF's
    ``sigmoid(w)``, a learnable ``v_th``) at their trained values -- as detached tensors shaped to
    broadcast over one sample ``size`` (a per-channel vector of a ``[C, H, W]`` map as ``[C, 1, 1]``)."""

    def shaped(value) -> torch.Tensor:
        t = (
            value.detach().double()
            if torch.is_tensor(value)
            else torch.tensor(float(value), dtype=torch.float64)
        )
        if t.ndim == 1 and t.numel() > 1 and len(size) > 1 and t.numel() == size[0]:
            t = t.reshape(-1, *([1] * (len(size) - 1)))
        return t

    return shaped(m.leak()), shaped(m.firing_threshold())


def _refuse_neuron(m: Neuron, key: str):
    """A neuron kind the exporter has no NIR node for, refused by name."""
    raise NIRExportError(
        f"{key}: {type(m).__name__} neurons cannot be exported to NIR by rmpsnn (only LIF/IF-type layers: "
        f"LIF, IF, PLIF and learnable-threshold LIF/IF); a current-based LIF would be NIR's CubaLIF, "
        f"which this exporter does not write yet"
    )


def _per_neuron(values, size) -> np.ndarray:
    """A parameter (scalar or broadcastable) as a float32 array of one sample's shape."""
    return np.broadcast_to(as_float32(values), size).astype(np.float32).copy()


def _record_shapes(model: nn.Module, sample: torch.Tensor, static: bool) -> dict:
    """Per-sample input and output shapes of every module (time and batch dimensions removed).

    A tensor's leading dimensions are ``[T, B]`` (time-major), ``[T*B]`` (inside
    :class:`TimeFolded`) or ``[B]`` (before the time dimension is added): they are told apart by
    the sample's ``T`` and ``B``."""
    if static:
        B, T = sample.shape[0], int(getattr(model, "timesteps", 1) or 1)
    else:
        T, B = sample.shape[0], sample.shape[1]

    def per_sample(shape: tuple) -> tuple:
        if len(shape) >= 2 and shape[0] == T and shape[1] == B:
            return tuple(shape[2:])
        return tuple(shape[1:])  # [T*B, ...] or [B, ...]

    shapes, handles = {}, []

    def hook(m, inputs, out):
        shapes[id(m)] = (per_sample(inputs[0].shape), per_sample(out.shape))

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _emit_converted(snn, sample: torch.Tensor, allow_lossy_reset: bool, dt: float) -> GraphBuilder:
    """Walk the ``torch.fx`` graph of a converted SNN (:class:`rmpsnn.conversion.ConvertedSNN`)."""
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
    b = GraphBuilder(shapes, allow_lossy_reset, dt)
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
            flat = _flatten(b.nir, in_shape, int(start), -1)
            values[node.name] = [b.add(node.name, flat, values[node.args[0].name])]
        elif node.op == "output":
            last = values[node.args[0].name]
        else:
            raise NIRExportError(
                f"converted graph node {node.name} ({node.op} {node.target}) cannot be exported"
            )
    # the converted SNN accumulates its last layer over time (the read-out): an integrator
    size = tuple(gm.graph.find_nodes(op="output")[0].args[0].meta["tensor_meta"].shape[1:])
    meta = {"rmpsnn": {"readout": "final", "dt": dt}}
    b.nodes["readout"] = b.nir.I(r=np.full(size, 1.0 / dt, np.float32), metadata=meta)
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
    dt: float | None = None,
    target: str | None = None,
    portable: bool | None = None,
    metadata: dict | None = None,
):
    """The NIR graph of ``model`` (an rmpsnn spiking model, an ``nn.Sequential`` of its layers, or
    a converted SNN -- then ``timesteps`` says how many steps the graph is meant to run);
    ``sample_input`` (one batch as the model takes it) fixes the shapes.  With ``path`` the graph
    is also written (HDF5, ``nir.write``).  Returns the ``nir.NIRGraph``.

    ``dt`` is the time step the consumer will simulate with (NIR's parameters are continuous-time;
    see the module doc), default 1; ``target="snntorch" | "norse" | "spikingjelly" | "rmpsnn"``
    picks the dt that tool's importer assumes (:data:`TARGET_DT`) and ``portable=True``:
    LIF input gains folded into the layer before, no integrating read-out (see
    :func:`make_portable`), so that the tool simulates the same network.  ``portable`` defaults
    to ``True`` for another tool's target, else ``False``.  ``metadata``: more entries of the
    graph's ``rmpsnn`` metadata (e.g. the input normalisation ``input_mean``/``input_std``)."""
    nir = nir_package()
    dt = resolve_dt(dt, target)
    if portable is None:
        portable = target not in (None, "rmpsnn")
    if isinstance(model, ConvertedSNN):
        if timesteps is None:
            raise InputError("to_nir of a converted SNN needs timesteps= (how many steps it runs)")
        b = _emit_converted(model, sample_input, allow_lossy_reset, dt)
        meta = {"rmpsnn": {**(metadata or {}), "dt": dt, "timesteps": int(timesteps), "input": "static"}}
        return _finish(nir, b, meta, path, portable, target)
    was_training = model.training
    model.eval()
    static = _is_static(model, sample_input)
    try:
        shapes = _record_shapes(model, sample_input, static)
        b = GraphBuilder(shapes, allow_lossy_reset, dt)
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
    kind = "static" if static else "events"
    meta = {"rmpsnn": {**(metadata or {}), "dt": dt, "timesteps": int(timesteps), "input": kind}}
    return _finish(nir, b, meta, path, portable, target)


def _is_static(model: nn.Module, sample: torch.Tensor) -> bool:
    """Whether ``sample`` is one static batch ``[B, ...]`` (repeated over time by the model)
    rather than a time-major ``[T, B, ...]``: rmpsnn's spiking models take images ``[B, C, H, W]``;
    a plain stack of layers takes time-major input."""
    return isinstance(model, SpikingNet) or sample.ndim == 4


def _finish(nir, b: GraphBuilder, meta: dict, path, portable: bool = False, target: str | None = None):
    meta["rmpsnn"]["exporter"] = "rmpsnn"
    if portable:
        refuse_initial_potentials(nir, b, target)
        changes = unit_thresholds(nir, b) + fold_scales(nir, b)
        changes += make_portable(nir, b, fold_r=target in (None, "norse"))
        if target == "norse":
            changes += sum_pools_for_norse(nir, b)
        meta["rmpsnn"]["portable"] = changes
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta)
    if b.lossy:
        warnings.warn(
            f"NIR export: {len(b.lossy)} layers ({', '.join(b.lossy[:3])}{', ...' * (len(b.lossy) > 3)}) "
            f"use soft reset, written as v_reset=0 with the soft reset in the node metadata. "
            f"rmpsnn.export.from_nir restores it; other NIR consumers will simulate reset-to-zero neurons "
            f"(a different network).",
            stacklevel=3,
        )
    if path is not None:  # atomically: a failed write (full disk) leaves the previous file intact
        atomic_write(path, lambda tmp: nir.write(tmp, graph))
    return graph
