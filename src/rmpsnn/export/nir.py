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
  what snnTorch, Norse and SpikingJelly read; see :func:`_make_portable` and docs/export.md for
  what each of them runs identically (tested against their importers).

**Time.**  A static image is fed at every step (direct encoding); the number of steps, the
integrator's read-out (final potential or mean) and the surrogate gradient are in metadata.

**Converted SNNs** (:class:`rmpsnn.conversion.ConvertedSNN`) are exported from their
``torch.fx`` graph: each IF layer becomes ``IF`` (threshold θ, per channel if balanced so)
followed by ``Scale(θ)`` (the layer outputs spikes x θ), additions become summed edges, and
the accumulated read-out an ``I`` node; the initial potential (e.g. θ/2) is in metadata.
"""

from __future__ import annotations

import operator
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..conversion import ConvertedSNN, IFNode
from ..errors import InputError, NIRExportError
from ..io import atomic_write
from ..layers import TdBatchNorm, TimeFolded, repeat_time
from ..limits import check_timesteps
from ..models.spiking import SpikingBasicBlock, SpikingNet
from ..neurons import IF, LIF, Neuron, OutputIntegrator, SpikingNeuron

__all__ = ["TARGET_DT", "NIRExportError", "NIRNetwork", "from_nir", "to_nir"]

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
    def __init__(self, shapes: dict, allow_lossy_reset: bool, dt: float = DT):
        self.nir = _nir()
        self.dt = dt
        self.nodes, self.edges, self.shapes = {}, [], shapes
        self.allow_lossy = allow_lossy_reset
        self.lossy: list[str] = []
        self.pending_conv: str | None = None  # a conv node a following BN may fold into

    def sources(self, name: str) -> list[str]:
        return [s for s, d in self.edges if d == name]

    def users(self, name: str) -> list[str]:
        return [d for s, d in self.edges if s == name]

    def bypass(self, name: str) -> None:
        """Remove node ``name``, connecting its inputs to its users."""
        srcs, dsts = self.sources(name), self.users(name)
        self.edges = [(s, d) for s, d in self.edges if name not in (s, d)] + [
            (s, d) for s in srcs for d in dsts
        ]
        del self.nodes[name]

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
        if isinstance(m, (TdBatchNorm, nn.BatchNorm2d)):
            if self.pending_conv is None or inp != [self.pending_conv]:
                raise NIRExportError(
                    f"{key}: a batch norm can only be exported folded into the conv before it"
                )
            if m.training or m.running_mean is None:
                raise NIRExportError(f"{key}: call model.eval() first (BN folds with its running statistics)")
            gain = (m.alpha * m.v_th) if isinstance(m, TdBatchNorm) else 1.0
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
    return np.broadcast_to(_np(values), size).astype(np.float32).copy()


def _pair(v) -> tuple[int, int]:
    """One number or two (height, width) as a pair of ints."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise NIRExportError(f"expected one or two numbers, got {v!r}") from e
    if a.ndim > 1 or a.size not in (1, 2) or not np.isfinite(a).all() or (a != np.round(a)).any():
        raise NIRExportError(f"expected one or two whole numbers, got {a.tolist()}")
    a = a.reshape(-1).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


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


def _emit_converted(snn, sample: torch.Tensor, allow_lossy_reset: bool, dt: float) -> _Builder:
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
    b = _Builder(shapes, allow_lossy_reset, dt)
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


# The time step each consumer's NIR importer assumes (what it divides tau by); export with the
# consumer's dt so that its discretisation gives back rmpsnn's u[t] = β u[t-1] + x[t].
TARGET_DT = {"rmpsnn": 1.0, "snntorch": 1e-4, "norse": 1e-3, "spikingjelly": 1e-4}


def _resolve_dt(dt: float | None, target: str | None) -> float:
    if target is not None:
        if target not in TARGET_DT:
            raise InputError(f"unknown target {target!r}; valid values: {', '.join(TARGET_DT)}")
        if dt is not None and dt != TARGET_DT[target]:
            raise InputError(f"target={target!r} means dt={TARGET_DT[target]:g}; give one of them, not both")
        return TARGET_DT[target]
    dt = DT if dt is None else float(dt)
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f"dt must be a finite number > 0, got {dt}")
    return dt


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
):
    """The NIR graph of ``model`` (an rmpsnn spiking model, an ``nn.Sequential`` of its layers, or
    a converted SNN -- then ``timesteps`` says how many steps the graph is meant to run);
    ``sample_input`` (one batch as the model takes it) fixes the shapes.  With ``path`` the graph
    is also written (HDF5, ``nir.write``).  Returns the ``nir.NIRGraph``.

    ``dt`` is the time step the consumer will simulate with (NIR's parameters are continuous-time;
    see the module doc), default 1; ``target="snntorch" | "norse" | "spikingjelly" | "rmpsnn"``
    picks the dt that tool's importer assumes (:data:`TARGET_DT`) and ``portable=True``:
    LIF input gains folded into the layer before, no integrating read-out (see
    :func:`_make_portable`), so that the tool simulates the same network.  ``portable`` defaults
    to ``True`` for another tool's target, else ``False``."""
    nir = _nir()
    dt = _resolve_dt(dt, target)
    if portable is None:
        portable = target not in (None, "rmpsnn")
    if isinstance(model, ConvertedSNN):
        if timesteps is None:
            raise InputError("to_nir of a converted SNN needs timesteps= (how many steps it runs)")
        b = _emit_converted(model, sample_input, allow_lossy_reset, dt)
        meta = {"rmpsnn": {"dt": dt, "timesteps": int(timesteps), "input": "static"}}
        return _finish(nir, b, meta, path, portable, target)
    was_training = model.training
    model.eval()
    static = _is_static(model, sample_input)
    try:
        shapes = _record_shapes(model, sample_input, static)
        b = _Builder(shapes, allow_lossy_reset, dt)
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
    meta = {"rmpsnn": {"dt": dt, "timesteps": int(timesteps), "input": "static" if static else "events"}}
    return _finish(nir, b, meta, path, portable, target)


def _is_static(model: nn.Module, sample: torch.Tensor) -> bool:
    """Whether ``sample`` is one static batch ``[B, ...]`` (repeated over time by the model)
    rather than a time-major ``[T, B, ...]``: rmpsnn's spiking models take images ``[B, C, H, W]``;
    a plain stack of layers takes time-major input."""
    return isinstance(model, SpikingNet) or sample.ndim == 4


def _sum_pools_for_norse(nir, b: _Builder) -> list[str]:
    """Norse reads ``SumPool2d`` but not ``AvgPool2d``: write each average pool as a sum pool and
    fold its ``1/k²`` into the Affine/Conv2d after it (through a Flatten)."""
    changed = []
    for name, node in list(b.nodes.items()):
        if not isinstance(node, nir.AvgPool2d):
            continue
        if np.any(np.asarray(node.padding) != 0):
            raise NIRExportError(f"{name}: a padded average pool has no sum-pool form for Norse")
        nxt = b.users(name)
        while len(nxt) == 1 and isinstance(b.nodes[nxt[0]], nir.Flatten):
            nxt = b.users(nxt[0])
        if len(nxt) != 1 or not isinstance(b.nodes[nxt[0]], (nir.Affine, nir.Conv2d)):
            raise NIRExportError(
                f"{name}: Norse has no average pooling, and the 1/k^2 of a sum pool can only be folded "
                f"into a following Affine/Conv2d layer"
            )
        follower = b.nodes[nxt[0]]
        follower.weight = (np.asarray(follower.weight) / float(np.prod(node.kernel_size))).astype(np.float32)
        b.nodes[name] = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
        changed.append(f"{name}: average pool written as a sum pool, 1/k^2 folded into {nxt[0]}")
    return changed


def _make_portable(nir, b: _Builder, fold_r: bool) -> list[str]:
    """Rewrite the graph into the node types the NIR importers we test read: the output
    integrator ``I`` is left out (snnTorch and SpikingJelly refuse it, Norse drops it), so the graph
    outputs the last layer's value at every step, which the consumer sums over time; with
    ``fold_r`` each LIF's input gain ``r`` is folded into the Affine/Conv2d that feeds it (``r = 1``:
    Norse ignores ``r``).  Returns what was changed, for the graph's metadata."""
    changed = []
    for name, node in list(b.nodes.items()):
        if isinstance(node, nir.LIF) and fold_r:
            r = np.asarray(node.r, np.float64)
            if np.allclose(r, 1.0):
                continue
            gain = float(r.flat[0])
            if not np.allclose(r, gain):
                raise NIRExportError(f"{name}: a per-neuron LIF gain r cannot be folded (portable=False)")
            sources = b.sources(name)
            for src in sources:
                prev = b.nodes[src]
                if not isinstance(prev, (nir.Affine, nir.Conv2d)) or b.users(src) != [name]:
                    raise NIRExportError(
                        f"{name}: its input gain r = {gain:g} can only be folded into Affine/Conv2d layers "
                        f"that feed nothing else, but {src} is a {type(prev).__name__}; export with "
                        f"portable=False (rmpsnn and SpikingJelly read r) or put a linear layer there"
                    )
            for src in sources:
                b.nodes[src].weight = (np.asarray(b.nodes[src].weight) * gain).astype(np.float32)
                b.nodes[src].bias = (np.asarray(b.nodes[src].bias) * gain).astype(np.float32)
            node.r = np.ones_like(np.asarray(node.r, np.float32))
            changed.append(f"{name}: r={gain:g} folded into {', '.join(sources)}")
        elif isinstance(node, nir.I) and b.users(name) == ["output"]:
            b.bypass(name)
            changed.append(f"{name}: the integrating read-out left out (sum the outputs over time)")
    return changed


def _fold_scales(nir, b: _Builder) -> list[str]:
    """Fold each ``Scale`` (a converted SNN's spikes x θ) into the Affine/Conv2d after it: through
    average pools and flattens (linear, channel-wise), ``W[:, j] *= s_j``.  A Conv2d needs the
    scale constant per channel (per-layer or per-channel thresholds)."""
    changed = []
    for name, node in list(b.nodes.items()):
        if not isinstance(node, nir.Scale):
            continue
        scale = np.asarray(node.scale, np.float64)
        users, path = b.users(name), []
        while len(users) == 1 and isinstance(b.nodes[users[0]], (nir.AvgPool2d, nir.Flatten)):
            path.append(users[0])
            users = b.users(users[0])
        target = b.nodes[users[0]] if len(users) == 1 else None
        if not isinstance(target, (nir.Affine, nir.Conv2d)) or len(b.sources(users[0])) != 1:
            raise NIRExportError(
                f"{name}: the threshold scale of a converted layer can only be folded into an Affine/Conv2d "
                f"that it alone feeds (through pooling/flatten); a residual addition cannot be exported "
                f"portably -- use portable=False (rmpsnn reads Scale)"
            )
        per_channel = scale.reshape(scale.shape[0], -1) if scale.ndim > 1 else None
        flattened = any(isinstance(b.nodes[q], nir.Flatten) for q in path)
        w = np.asarray(target.weight, np.float64)
        if isinstance(target, nir.Affine) and (flattened or scale.ndim == 1):
            if any(isinstance(b.nodes[q], nir.AvgPool2d) for q in path):
                if per_channel is None or not np.allclose(per_channel, per_channel[:, :1]):
                    raise NIRExportError(f"{name}: a per-neuron scale cannot pass an average pool")
                c = per_channel[:, 0]
                w = w * np.repeat(c, w.shape[1] // len(c))[None, :]
            else:
                w = w * scale.reshape(-1)[None, :]
        elif isinstance(target, nir.Conv2d) and per_channel is not None:
            if not np.allclose(per_channel, per_channel[:, :1]):
                raise NIRExportError(f"{name}: a per-neuron scale cannot be folded into a convolution")
            w = w * per_channel[:, 0][None, :, None, None]
        else:
            raise NIRExportError(f"{name}: cannot fold a scale of shape {scale.shape} into {users[0]}")
        target.weight = w.astype(np.float32)
        b.bypass(name)
        changed.append(f"{name}: folded into {users[0]}")
    return changed


def _unit_thresholds(nir, b: _Builder) -> list[str]:
    """Give neurons with per-channel or per-neuron thresholds the threshold 1 (SpikingJelly and
    snnTorch read one threshold per layer): divide the Affine/Conv2d that feeds them by θ, row by
    row.  The potential is then u/θ throughout, so the spikes (soft or hard reset) are the same."""
    changed = []
    for name, node in list(b.nodes.items()):
        if not isinstance(node, (nir.IF, nir.LIF)):
            continue
        th = np.asarray(node.v_threshold, np.float64)
        if th.size == 0 or np.allclose(th, th.flat[0]):
            continue
        src = b.sources(name)
        prev = b.nodes[src[0]] if len(src) == 1 else None
        if not isinstance(prev, (nir.Affine, nir.Conv2d)) or b.users(src[0]) != [name]:
            raise NIRExportError(
                f"{name}: its per-channel thresholds can only be normalised through the one Affine/Conv2d "
                f"that feeds it; export with portable=False or balance per layer"
            )
        per_out = th.reshape(th.shape[0], -1)
        if isinstance(prev, nir.Conv2d) and not np.allclose(per_out, per_out[:, :1]):
            raise NIRExportError(f"{name}: per-neuron thresholds after a convolution cannot be normalised")
        rows = per_out[:, 0] if isinstance(prev, nir.Conv2d) else th.reshape(-1)
        w = np.asarray(prev.weight, np.float64)
        prev.weight = (w / rows.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        prev.bias = (np.asarray(prev.bias, np.float64) / rows).astype(np.float32)
        node.v_threshold = np.ones_like(np.asarray(node.v_threshold, np.float32))
        changed.append(f"{name}: thresholds normalised to 1 through {src[0]}")
    return changed


def _refuse_initial_potentials(nir, b: _Builder, target: str | None) -> None:
    """NIR has no initial potential: other tools start every neuron at 0, so a converted SNN
    started at θ/2 (``v_init="half"``) would run as a different network there."""
    started = [
        k
        for k, n in b.nodes.items()
        if isinstance(n, nir.IF) and _node_meta(n).get("v_init", "none") not in ("none", None, 0, 0.0)
    ]
    if started:
        v_init = _node_meta(b.nodes[started[0]])["v_init"]
        raise NIRExportError(
            f"{started[0]}: the neurons start at v_init={v_init!r}, which NIR cannot express; "
            f"{target or 'other tools'} would start them at 0 (a different network). Convert with "
            f"v_init=None to export for other tools, or export for rmpsnn (target='rmpsnn' or no target: "
            f"rmpsnn's from_nir restores it)"
        )


def _finish(nir, b: _Builder, meta: dict, path, portable: bool = False, target: str | None = None):
    meta["rmpsnn"]["exporter"] = "rmpsnn"
    if portable:
        _refuse_initial_potentials(nir, b, target)
        changes = _unit_thresholds(nir, b) + _fold_scales(nir, b)
        changes += _make_portable(nir, b, fold_r=target in (None, "norse"))
        if target == "norse":
            changes += _sum_pools_for_norse(nir, b)
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
            steps = self.timesteps if timesteps is None else timesteps
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
            stride=_pair(node.stride),
            padding=_pair(node.padding),
            dilation=_pair(node.dilation),
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
    meta = _node_meta(node)
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
    nir = _nir()
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
        readout = OutputIntegrator(_node_meta(node).get("readout", "final"))
        return readout if abs(gain - 1.0) < 1e-6 else nn.Sequential(_Scale(gain), readout)
    if isinstance(node, nir.Scale):
        return _Scale(_tensor(node.scale, "scale", name))
    raise NIRExportError(f"NIR node {name}: {type(node).__name__} is not supported by rmpsnn's importer")


def _node_meta(node) -> dict:
    meta = getattr(node, "metadata", None) or {}
    return meta.get("rmpsnn", {}) if isinstance(meta.get("rmpsnn", {}), dict) else {}


class _Scale(nn.Module):
    """Multiply by a constant (a number, or one value per neuron of the per-sample shape)."""

    def __init__(self, gain):
        super().__init__()
        self.register_buffer("gain", torch.as_tensor(gain, dtype=torch.float32))

    def forward(self, x):
        return x * self.gain


def _read_graph(graph):
    nir = _nir()
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
        and not _node_meta(graph.nodes[k])
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
    nir = _nir()
    if target is not None or dt is not None:
        dt = _resolve_dt(dt, target)
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
    graph_meta = _node_meta(graph)
    ours = graph_meta.get("exporter") == "rmpsnn"
    dts = {
        k: float(dt if dt is not None else _node_meta(graph.nodes[k]).get("dt", graph_meta.get("dt", DT)))
        for k in order
    }
    # rmpsnn's own nodes carry their dt and gains; other nodes follow the target's convention
    conventions = {
        k: "rmpsnn" if ours or _node_meta(graph.nodes[k]) or target != "norse" else "norse" for k in order
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
        detail = " ".join(str(e).split())[:200]
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
        detail = " ".join(str(e).split())[:200]
        raise NIRExportError(
            f"the graph's layers do not fit its input {shape} ({detail}); the graph is damaged or was not "
            f"written for this input"
        ) from e
