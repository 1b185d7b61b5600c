"""Turn a traced ReLU network into the graph of an SNN (torch.fx).

Steps, each on the fx graph of the ANN in eval mode:

1. fold every BatchNorm into the Conv/Linear in front of it (``w' = w γ/σ``,
   ``b' = (b - μ) γ/σ + β``); a BN with no such layer in front is an error;
2. drop Dropout and Identity;
3. replace every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``) and every
   :class:`~rmpsnn.models.QCFS` by an :class:`IFNode`;
4. max pooling becomes average pooling with a warning (``maxpool="avg"``) or is refused
   (``maxpool="error"``): a spike-count max-pool is not exact;
5. check that every remaining node is linear in its input (convolutions, linear layers, average
   pooling, flatten/reshape, additions of branches, scaling by constants).  Anything else raises
   :class:`ConversionError` naming the node and what to change -- never a partial conversion.
"""

from __future__ import annotations

import copy
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import ConversionError, InputError
from ..models.qcfs import QCFS
from .nodes import IFNode

__all__ = ["ConversionError", "build_snn_graph"]


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
)
_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_LINEAR_FUNCS = {
    operator.add,
    operator.iadd,
    torch.add,
    torch.flatten,
    torch.cat,
    torch.reshape,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    operator.getitem,
    getattr,
}
_SCALE_FUNCS = {operator.mul, operator.truediv, torch.mul}
_LINEAR_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "contiguous",
    "add",
    "add_",
    "mean",
    "permute",
    "transpose",
    "unflatten",
    "squeeze",
    "unsqueeze",
}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAXPOOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}


def _where(node: fx.Node) -> str:
    t = node.target
    what = t if isinstance(t, str) else getattr(t, "__name__", repr(t))
    return f"node '{node.name}' ({node.op} {what})"


class _Tracer(fx.Tracer):
    """QCFS activations stay single nodes (their threshold is read by the converter)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, qualname)


def trace(ann: nn.Module) -> fx.GraphModule:
    ann = copy.deepcopy(ann).eval()
    try:
        graph = _Tracer().trace(ann)
        return fx.GraphModule(ann, graph, type(ann).__name__)
    except Exception as e:  # fx raises many types for untraceable code
        raise ConversionError(
            f"could not trace the ANN with torch.fx ({type(e).__name__}: {e}). The converter needs a "
            f"static graph: move data-dependent Python control flow out of forward(), or wrap the "
            f"untraceable part in a module and convert the parts separately"
        ) from e


def _fold_bn(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN):
            continue
        bn = modules[node.target]
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
    dilation = m.dilation if isinstance(m.dilation, tuple) else (m.dilation,)
    if any(d != 1 for d in dilation) or m.return_indices:
        what = "dilation" if any(d != 1 for d in dilation) else "return_indices"
        raise ConversionError(
            f"{_where(node)}: max pooling with {what} has no average-pooling counterpart; "
            f"train the ANN with nn.AvgPool (dilation 1)"
        )
    return _MAXPOOL[type(m)](
        m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=False
    )


def _is_relu(node: fx.Node, modules) -> nn.Module | None:
    """The activation module this node applies (ReLU or QCFS), else None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, (nn.ReLU, QCFS)):
            return m
    elif node.op == "call_function" and node.target in _RELU_FUNCS:
        return nn.ReLU()
    elif node.op == "call_method" and node.target in ("relu", "relu_"):
        return nn.ReLU()
    return None


def build_snn_graph(
    ann: nn.Module, *, reset: str = "soft", maxpool: str = "avg"
) -> tuple[fx.GraphModule, list[str]]:
    """Trace ``ann`` and return ``(graph module, IF node names in execution order)``."""
    if maxpool not in ("avg", "error"):
        raise InputError(f"maxpool must be 'avg' or 'error', got {maxpool!r}")
    gm = trace(ann)
    _fold_bn(gm)
    modules = dict(gm.named_modules())
    if_names: list[str] = []
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                continue
            if type(m) in _MAXPOOL:
                if maxpool == "error":
                    raise ConversionError(
                        f"{_where(node)}: max pooling has no exact spiking counterpart; "
                        f"train the ANN with average pooling or pass maxpool='avg'"
                    )
                avg = _avg_for_max(m, node)
                warnings.warn(
                    f"{_where(node)}: max pooling replaced by average pooling (accuracy may drop; train "
                    f"the ANN with AvgPool for an exact conversion)",
                    stacklevel=3,
                )
                _set_module(gm, node.target, avg)
                continue
        elif node.op == "call_function" and node.target in (F.dropout, F.dropout2d):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        elif node.op == "call_function" and node.target in (F.max_pool1d, F.max_pool2d):
            raise ConversionError(
                f"{_where(node)}: functional max pooling cannot be converted; use nn.AvgPool "
                f"(or nn.MaxPool, which is replaced by average pooling with a warning)"
            )
        act = _is_relu(node, modules)
        if act is not None:
            name = f"if_{len(if_names)}"
            gm.add_submodule(name, IFNode(name, reset=reset, ann_activation=copy.deepcopy(act)))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            if_names.append(name)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    _validate(gm)
    gm.recompile()
    if not if_names:
        raise ConversionError("the ANN has no ReLU/QCFS activation to turn into spiking neurons")
    return gm, if_names


def _validate(gm: fx.GraphModule) -> None:
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
                nn.ReLU6: "use ReLU",
                nn.LeakyReLU: "use ReLU",
                nn.LayerNorm: "use BatchNorm after a conv/linear layer",
                nn.Softmax: "remove it: the SNN reads out the accumulated logits",
            }.get(type(m), "replace it with a Conv/Linear/AvgPool/ReLU equivalent")
            raise ConversionError(
                f"{_where(node)}: {type(m).__name__} cannot be converted to spiking neurons; {hint}"
            )
        mixed = _mixes_batch_dim(node)
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


def _is_scaling(node: fx.Node) -> bool:
    """``x * c``, ``c * x`` or ``x / c`` with a number ``c``: linear.  ``c / x`` or ``x * y`` is not."""
    a = node.args
    if len(a) != 2 or node.target not in _SCALE_FUNCS:
        return False
    num = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in a]
    if node.target is operator.truediv:
        return isinstance(a[0], fx.Node) and num[1]
    return num[0] != num[1] and any(isinstance(v, fx.Node) for v in a)


def _arg(node: fx.Node, pos: int, name: str, default):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _dims(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _mixes_batch_dim(node: fx.Node) -> str | None:
    """Why ``node`` acts on dim 0 (the batch, into which time is folded), or None."""
    t, op = node.target, node.op
    if op == "call_method":
        if t in ("mean", "sum"):
            dims = _arg(node, 1, "dim", None)
            if dims is None or 0 in _dims(dims):
                return f".{t}() reduces over dim 0" if dims is not None else f".{t}() reduces over all dims"
        if t in ("squeeze", "unsqueeze") and 0 in _dims(_arg(node, 1, "dim", None)):
            return f".{t}(0) changes dim 0"
        if t == "transpose" and 0 in (_arg(node, 1, "dim0", None), _arg(node, 2, "dim1", None)):
            return ".transpose() moves dim 0"
        if t == "permute":
            order = node.args[1:] if len(node.args) > 2 else _dims(_arg(node, 1, "dims", [0]))
            if order and order[0] != 0:
                return ".permute() moves dim 0"
        if t == "flatten" and _arg(node, 1, "start_dim", 0) == 0:
            return ".flatten() starts at dim 0 (give start_dim=1)"
        if t == "unflatten" and _arg(node, 1, "dim", None) == 0:
            return ".unflatten(0, ...) splits dim 0"
        if t in ("view", "reshape"):
            shape = node.args[1:] if len(node.args) > 2 else _dims(_arg(node, 1, "shape", []))
            if len(shape) < 2 or (isinstance(shape[0], int) and shape[0] != -1):
                return f".{t}{tuple(shape)} does not keep dim 0 (use x.{t}(x.size(0), ...))"
    if op == "call_function":
        if t is torch.flatten and _arg(node, 1, "start_dim", 0) == 0:
            return "torch.flatten starts at dim 0 (give start_dim=1)"
        if t is torch.cat and _arg(node, 1, "dim", 0) == 0:
            return "torch.cat joins along dim 0"
        if t is torch.reshape:
            shape = _dims(_arg(node, 1, "shape", []))
            if len(shape) < 2 or (isinstance(shape[0], int) and shape[0] != -1):
                return f"torch.reshape to {tuple(shape)} does not keep dim 0"
        if t is operator.getitem:
            src, idx = node.args
            on_shape = isinstance(src, fx.Node) and (
                (src.op == "call_function" and src.target is getattr) or src.target == "size"
            )
            first = idx[0] if isinstance(idx, tuple) and idx else idx
            if not on_shape and not (isinstance(first, slice) and first == slice(None)) and first is not ...:
                return f"indexing [{first!r}] selects along dim 0"
    if op == "call_module" and isinstance(node.graph.owning_module, nn.Module):
        m = node.graph.owning_module.get_submodule(node.target)
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            return "nn.Flatten(start_dim=0) flattens dim 0"
    return None
