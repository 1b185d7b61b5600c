"""Turn a traced ReLU network into the graph of an SNN (torch.fx).

Steps, each on the fx graph of the ANN in eval mode:

1. fold every BatchNorm into the Conv/Linear in front of it (``w' = w γ/σ``,
   ``b' = (b - μ) γ/σ + β``); a BN with no such layer in front is an error;
2. drop Dropout and Identity;
3. replace every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``, ``clamp(min=0)``),
   every clipped ReLU (``nn.ReLU6``, ``F.relu6``, ``nn.Hardtanh(0, c)``, ``F.hardtanh(x, 0, c)``,
   ``torch.clamp(x, 0, c)``, ``x.clamp(0, c)``) and every :class:`~rmpsnn.models.QCFS` by an
   :class:`IFNode` (a clipped ReLU's node has its threshold capped at ``c``: ``cap``);
4. max pooling (``nn.MaxPool1d/2d/3d``, ``nn.AdaptiveMaxPool1d/2d/3d`` and their functional forms)
   becomes :class:`~rmpsnn.conversion.pooling.SpikingMaxPool` (``maxpool="spiking"``, the default:
   the max of the accumulated inputs, exact in the limit), average pooling with a warning
   (``maxpool="avg"``) or is refused (``maxpool="error"``);
5. check that every remaining node is linear in its input (convolutions, linear layers, average
   pooling, flatten/reshape, additions of branches, scaling by constants).  Anything else raises
   :class:`ConversionError` naming the node and what to change -- never a partial conversion.
"""

from __future__ import annotations

import copy
import inspect
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import ConversionError, InputError
from ..models.qcfs import QCFS
from .checks import batch_dim_problem, input_rank, node_arg, tensor_ranks
from .nodes import IFNode
from .pooling import SpikingMaxPool

__all__ = ["MAXPOOL_MODES", "build_snn_graph"]


_LINEAR_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    nn.Unflatten,
    IFNode,
    SpikingMaxPool,
)
_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_CLAMP_FUNCS = {torch.clamp, torch.clip, torch.clamp_min}
_CLAMP_METHODS = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"}
_LINEAR_FUNCS = {
    operator.add,
    operator.iadd,
    torch.add,
    torch.flatten,
    torch.cat,
    torch.reshape,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    operator.getitem,
    getattr,
    # affine, so the rate code passes them like an addition (dim 0 is checked separately)
    operator.sub,
    operator.isub,
    torch.sub,
    operator.neg,
    torch.neg,
    torch.mean,
    torch.sum,
}
_SCALE_FUNCS = {operator.mul, operator.truediv, torch.mul, torch.div}
_LINEAR_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "contiguous",
    "add",
    "add_",
    "sub",
    "sub_",
    "neg",
    "mean",
    "sum",
    "permute",
    "transpose",
    "unflatten",
    "squeeze",
    "unsqueeze",
}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAXPOOL = {
    nn.MaxPool1d: nn.AvgPool1d,
    nn.MaxPool2d: nn.AvgPool2d,
    nn.MaxPool3d: nn.AvgPool3d,
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}
# functional max pooling -> (module class, its positional argument names after the input)
_MAXPOOL_FUNCS = {
    **{
        f: (cls, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"))
        for fs, cls in (
            ((F.max_pool1d, torch.max_pool1d), nn.MaxPool1d),
            ((F.max_pool2d, torch.max_pool2d), nn.MaxPool2d),
            ((F.max_pool3d, torch.max_pool3d), nn.MaxPool3d),
        )
        for f in fs
    },
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
    F.adaptive_max_pool3d: (nn.AdaptiveMaxPool3d, ("output_size", "return_indices")),
}
MAXPOOL_MODES = ("spiking", "avg", "error")


def _where(node: fx.Node) -> str:
    t = node.target
    what = t if isinstance(t, str) else getattr(t, "__name__", repr(t))
    return f"node '{node.name}' ({node.op} {what})"


class _Tracer(fx.Tracer):
    """QCFS activations stay single nodes (their threshold is read by the converter)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, qualname)


def _concrete_args(ann: nn.Module) -> dict:
    """The arguments of ``ann.forward`` after the input, fixed at their defaults (a ``scale=1.0``
    option is part of the network, not an input); a second argument without one is refused."""
    try:
        params = list(inspect.signature(ann.forward).parameters.values())
    except (TypeError, ValueError):  # no introspectable signature: trace as it is
        return {}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    inputs = [p.name for p in positional if p.default is p.empty]
    if len(inputs) > 1:
        names = ", ".join(map(repr, inputs))
        raise ConversionError(
            f"{type(ann).__name__}.forward takes {len(inputs)} inputs ({names}); the converter "
            f"converts a network of one input tensor: wrap it in a module whose forward(x) supplies "
            f"the others, or give them defaults"
        )
    return {p.name: p.default for p in positional[1:] if p.default is not p.empty}


def _drop_specialised_inputs(gm: fx.GraphModule) -> None:
    """fx keeps an argument fixed by ``concrete_args`` as a placeholder with a guard
    (``torch._assert(arg == default)``); the converted network takes only its input, so both go."""
    fixed = [n for n in gm.graph.nodes if n.op == "placeholder"][1:]
    for node in list(gm.graph.nodes):
        check = node.args[0] if node.op == "call_function" and node.target is torch._assert else None
        if isinstance(check, fx.Node) and any(a in fixed for a in check.args):  # only fx's own guards
            gm.graph.erase_node(node)
            if not check.users:
                gm.graph.erase_node(check)
    for node in fixed:
        if not node.users:
            gm.graph.erase_node(node)
    gm.recompile()


def trace(ann: nn.Module) -> fx.GraphModule:
    ann = copy.deepcopy(ann).eval()
    concrete = _concrete_args(ann)
    try:
        graph = _Tracer().trace(ann, concrete_args=concrete or None)
        gm = fx.GraphModule(ann, graph, type(ann).__name__)
    except Exception as e:  # fx raises many types for untraceable code
        raise ConversionError(
            f"could not trace the ANN with torch.fx ({type(e).__name__}: {e}). The converter needs a "
            f"static graph: move data-dependent Python control flow out of forward(), or wrap the "
            f"untraceable part in a module and convert the parts separately"
        ) from e
    if concrete:
        _drop_specialised_inputs(gm)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(out.args[0], fx.Node):
        kind = type(out.args[0]).__name__
        raise ConversionError(
            f"{type(ann).__name__} returns a {kind}; the converter needs a network that returns one "
            f"tensor (its logits): wrap it in a module whose forward returns that tensor"
        )
    return gm


def _fold_bn(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN):
            continue
        bn = modules[node.target]
        if bn.running_mean is None or bn.running_var is None:
            raise ConversionError(
                f"{_where(node)}: this BatchNorm has no running statistics (track_running_stats="
                f"False), so it normalises each batch by itself and cannot be folded into the layer "
                f"before it; train the ANN with track_running_stats=True"
            )
        prev = node.args[0]
        layer = modules.get(prev.target) if isinstance(prev, fx.Node) and prev.op == "call_module" else None
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            raise ConversionError(
                f"{_where(node)}: BatchNorm is not directly after a Conv/Linear layer, so it cannot be "
                f"folded into one; put each BN right after its convolution"
            )
        if len(prev.users) > 1:
            raise ConversionError(
                f"{_where(node)}: the layer before this BN is also used elsewhere; cannot fold"
            )
        with torch.no_grad():
            std = torch.sqrt(bn.running_var + bn.eps)
            gamma = bn.weight if bn.affine else torch.ones_like(std)
            beta = bn.bias if bn.affine else torch.zeros_like(std)
            scale = gamma / std
            fused = copy.deepcopy(layer)
            fused.weight.copy_(layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1))))
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * scale + beta
            if fused.bias is None:
                fused.bias = nn.Parameter(new_bias.clone())
            else:
                fused.bias.copy_(new_bias)
        _set_module(gm, prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


def _set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, name, module)


def _avg_for_max(m: nn.Module, node: fx.Node) -> nn.Module:
    """The average pooling that replaces max pooling ``m``: same window, stride, padding and
    output size (``ceil_mode``); padded cells are not counted, as max pooling ignores them."""
    if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return _MAXPOOL[type(m)](m.output_size)
    dilation = m.dilation if isinstance(m.dilation, tuple) else (m.dilation,)
    if any(d != 1 for d in dilation):
        raise ConversionError(
            f"{_where(node)}: max pooling with dilation has no average-pooling counterpart; "
            f"use maxpool='spiking' or train the ANN with nn.AvgPool (dilation 1)"
        )
    return _MAXPOOL[type(m)](
        m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=False
    )


def _pool_module(node: fx.Node, modules) -> nn.Module | None:
    """The max pooling this node applies, as a module (functional forms rebuilt), else None."""
    if node.op == "call_module" and type(modules.get(node.target)) in _MAXPOOL:
        return copy.deepcopy(modules[node.target])
    if node.op == "call_function" and node.target in _MAXPOOL_FUNCS:
        cls, names = _MAXPOOL_FUNCS[node.target]
        kwargs = dict(zip(names, node.args[1:], strict=False))
        kwargs.update(node.kwargs)
        if any(isinstance(v, fx.Node) for v in kwargs.values()):
            raise ConversionError(f"{_where(node)}: max pooling with computed arguments cannot be converted")
        if cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d) and kwargs.get("stride") in (None, []):
            kwargs.pop("stride", None)  # F.max_pool's default stride is the kernel size, as the module's
        return cls(**kwargs)
    return None


def _replace_maxpool(gm: fx.GraphModule, node: fx.Node, pool: nn.Module, maxpool: str, name: str) -> str:
    """Replace max pooling ``node`` as ``maxpool`` says; returns the new node's name."""
    if getattr(pool, "return_indices", False):
        raise ConversionError(
            f"{_where(node)}: max pooling with return_indices=True cannot be converted (the indices "
            f"change from step to step); return only the pooled values"
        )
    if maxpool == "error":
        raise ConversionError(
            f"{_where(node)}: max pooling is refused (maxpool='error'); pass maxpool='spiking' (the "
            f"default) or maxpool='avg', or train the ANN with average pooling"
        )
    if maxpool == "avg":
        warnings.warn(
            f"{_where(node)}: max pooling replaced by average pooling (accuracy may drop; the default "
            f"maxpool='spiking' keeps max pooling)",
            stacklevel=4,
        )
        new_module = _avg_for_max(pool, node)
    else:
        new_module = SpikingMaxPool(pool)
    gm.add_submodule(name, new_module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new.name


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _clamp_bounds(node: fx.Node) -> tuple | None:
    """``(min, max)`` of a clamp/clip node with number bounds, else None."""
    is_clamp = (node.op == "call_function" and node.target in _CLAMP_FUNCS) or (
        node.op == "call_method" and node.target in _CLAMP_METHODS
    )
    if not is_clamp:
        return None
    if str(getattr(node.target, "__name__", node.target)).startswith("clamp_min"):
        return (node_arg(node, 1, "min", None), None)
    return (node_arg(node, 1, "min", None), node_arg(node, 2, "max", None))


def _is_relu(node: fx.Node, modules) -> nn.Module | None:
    """The activation this node applies (ReLU, a ReLU clipped at c, or QCFS) as a module, else None.

    Clipped ReLUs come back as ``nn.Hardtanh(0, c)``; a clamp with other bounds is refused."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, QCFS):
            return m
        if isinstance(m, nn.ReLU):
            return nn.ReLU()
        if isinstance(m, nn.Hardtanh):  # also ReLU6
            if m.min_val != 0 or not m.max_val > 0:
                raise ConversionError(
                    f"{_where(node)}: Hardtanh({m.min_val}, {m.max_val}) cannot be converted; only a ReLU "
                    f"clipped at a positive c (Hardtanh(0, c), ReLU6) becomes IF neurons"
                )
            return nn.Hardtanh(0.0, float(m.max_val))
    elif node.op == "call_function" and node.target in _RELU_FUNCS:
        return nn.ReLU()
    elif node.op == "call_method" and node.target in ("relu", "relu_"):
        return nn.ReLU()
    elif node.op == "call_function" and node.target in (F.relu6, F.hardtanh, F.hardtanh_):
        lo, hi = (
            (0.0, 6.0)
            if node.target is F.relu6
            else (node_arg(node, 1, "min_val", -1.0), node_arg(node, 2, "max_val", 1.0))
        )
        if lo != 0 or not (_number(hi) and hi > 0):
            raise ConversionError(
                f"{_where(node)}: hardtanh({lo}, {hi}) cannot be converted; only a ReLU clipped at a "
                f"positive c (hardtanh(x, 0, c), relu6) becomes IF neurons"
            )
        return nn.Hardtanh(0.0, float(hi))
    bounds = _clamp_bounds(node)
    if bounds is not None:
        lo, hi = bounds
        if lo == 0 and hi is None:
            return nn.ReLU()
        if lo == 0 and _number(hi) and hi > 0:
            return nn.Hardtanh(0.0, float(hi))
        raise ConversionError(
            f"{_where(node)}: clamp(min={lo}, max={hi}) cannot be converted; only clamp(x, 0) (a ReLU) "
            f"and clamp(x, 0, c) with a number c > 0 (a clipped ReLU) become IF neurons"
        )
    return None


def build_snn_graph(
    ann: nn.Module, *, reset: str = "soft", maxpool: str = "spiking", example: torch.Tensor | None = None
) -> tuple[fx.GraphModule, list[str]]:
    """Trace ``ann`` and return ``(graph module, IF node names in execution order)``.

    ``example``: a batch of inputs; with it, negative dims are resolved (``x.mean(-4)`` of a 4-D
    tensor acts on dim 0) and shape errors are reported before any conversion work."""
    if maxpool not in MAXPOOL_MODES:
        raise InputError(f"maxpool must be one of {', '.join(MAXPOOL_MODES)}, got {maxpool!r}")
    gm = trace(ann)
    ranks = tensor_ranks(gm, example)
    _fold_bn(gm)
    modules = dict(gm.named_modules())
    if_names: list[str] = []
    pools = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                continue
        elif node.op == "call_function" and node.target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        pool = _pool_module(node, modules)
        if pool is not None:
            new_name = _replace_maxpool(gm, node, pool, maxpool, f"maxpool_{pools}")
            ranks[new_name] = ranks.get(node.name, -1)
            pools += 1
            continue
        act = _is_relu(node, modules)
        if act is not None:
            name = f"if_{len(if_names)}"
            gm.add_submodule(name, IFNode(name, reset=reset, ann_activation=copy.deepcopy(act)))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node.args[0],))
            ranks[new.name] = ranks.get(node.name, -1)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            if_names.append(name)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    _validate(gm, ranks if example is not None else None)
    gm.recompile()
    if not if_names:
        raise ConversionError("the ANN has no ReLU/QCFS activation to turn into spiking neurons")
    return gm, if_names


def _validate(gm: fx.GraphModule, ranks: dict[str, int] | None) -> None:
    """Refuse any node that is not linear or that acts on dim 0; ``ranks`` (value name -> rank,
    None when unknown) resolves negative dims."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, _LINEAR_MODULES):
                continue
            hint = {
                nn.Sigmoid: "use ReLU",
                nn.Tanh: "use ReLU",
                nn.GELU: "use ReLU",
                nn.LeakyReLU: "use ReLU",
                nn.LayerNorm: "use BatchNorm after a conv/linear layer",
                nn.Softmax: "remove it: the SNN reads out the accumulated logits",
            }.get(type(m), "replace it with a Conv/Linear/AvgPool/ReLU equivalent")
            raise ConversionError(
                f"{_where(node)}: {type(m).__name__} cannot be converted to spiking neurons; {hint}"
            )
        mixed = batch_dim_problem(node, input_rank(node, ranks))
        if mixed:
            raise ConversionError(
                f"{_where(node)}: {mixed}. The SNN folds time into the batch dimension (dim 0), so an "
                f"operation on dim 0 would mix time steps; keep dim 0 as the batch (e.g. "
                f"x.flatten(1), x.view(x.size(0), -1), torch.cat(..., dim=1))"
            )
        if node.op == "call_function":
            if node.target in _LINEAR_FUNCS:
                continue
            if _is_scaling(node):
                continue
            raise ConversionError(
                f"{_where(node)}: the function {getattr(node.target, '__name__', node.target)} is "
                f"not linear in its input and has no spiking counterpart; express it with "
                f"Conv/Linear/AvgPool/ReLU modules"
            )
        if node.op == "call_method":
            if node.target in _LINEAR_METHODS:
                continue
            raise ConversionError(
                f"{_where(node)}: the tensor method .{node.target}() cannot be converted; "
                f"express it with Conv/Linear/AvgPool/ReLU modules"
            )


def _is_constant(v) -> bool:
    """A number, or a parameter/buffer of the ANN (a ``get_attr`` node): the same every step."""
    if isinstance(v, fx.Node):
        return v.op == "get_attr"
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scaling(node: fx.Node) -> bool:
    """``x * c``, ``c * x`` or ``x / c`` with ``c`` a number or a parameter/buffer (e.g. a learnt
    per-channel scale): linear.  ``c / x`` or ``x * y`` of two activations is not."""
    a = node.args
    if len(a) != 2 or node.target not in _SCALE_FUNCS:
        return False
    const = [_is_constant(v) for v in a]
    if node.target in (operator.truediv, torch.div):
        return isinstance(a[0], fx.Node) and not const[0] and const[1]
    return const[0] != const[1] and any(isinstance(v, fx.Node) for v in a)
