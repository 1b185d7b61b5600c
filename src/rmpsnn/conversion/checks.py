"""Checks of a converted network's graph and inputs: what the network takes (rank, channels,
dtype, finite values) and the guard against operations on dim 0 (the batch, into which the SNN
folds time), with negative dims resolved from the tensors' ranks."""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from ..errors import InputError

__all__ = ["batch_dim_problem", "check_input", "expected_input", "input_rank", "node_arg", "tensor_ranks"]


def expected_input(gm: fx.GraphModule) -> tuple[int, int, str] | None:
    """``(rank of a batch, channels or features, what says so)`` from the first Conv/Linear layer
    that reads the network's input directly, or None when no such layer does."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            m = modules.get(user.target) if user.op == "call_module" else None
            if isinstance(m, nn.Linear):
                return (
                    2,
                    m.in_features,
                    f"its first layer {user.target!r} (Linear) takes {m.in_features} features",
                )
            for dims, cls in ((1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d)):
                if isinstance(m, cls):
                    what = f"its first layer {user.target!r} ({cls.__name__}) takes {m.in_channels} channels"
                    return dims + 2, m.in_channels, what
        return None
    return None


def check_input(x, expected: tuple[int, int, str] | None, dtype: torch.dtype | None, what: str) -> None:
    """Refuse inputs the network cannot take, saying what it expects (``what`` names the input)."""
    if not torch.is_tensor(x):
        raise InputError(f"{what} must be a tensor, got {type(x).__name__}")
    layouts = {2: "[B, features]", 3: "[B, C, L]", 4: "[B, C, H, W]", 5: "[B, C, D, H, W]"}
    layout = layouts[expected[0]] if expected is not None else "[B, ...]"
    if expected is not None:
        rank, channels, why = expected
        if x.ndim != rank or x.shape[1] != channels:
            raise InputError(
                f"{what} has shape {tuple(x.shape)}; the network takes a batch {layout} ({why}), one "
                f"static input per sample (time steps are added by the simulation)"
            )
    if not x.is_floating_point():
        raise InputError(
            f"{what} has dtype {x.dtype}; the network takes floating-point inputs {layout} normalised "
            f"as in the ANN's training (e.g. x.float() / 255, then the mean/std normalisation)"
        )
    if dtype is not None and x.dtype != dtype:
        raise InputError(
            f"{what} has dtype {x.dtype} but the network's weights are {dtype}; pass x.to({dtype})"
        )
    if not torch.isfinite(x).all():
        raise InputError(f"{what} contains NaN or inf values")


def tensor_ranks(gm: fx.GraphModule, example: torch.Tensor | None) -> dict[str, int]:
    """The rank of every tensor value of the traced ANN ``gm`` on ``example`` (empty without one)."""
    if example is None:
        return {}
    dtype = next((p.dtype for p in gm.parameters()), None)
    check_input(example, expected_input(gm), dtype, "calibration_data")
    ranks: dict[str, int] = {}

    class Ranks(fx.Interpreter):
        # not fx's ShapeProp: that prints the whole traceback to stderr before it re-raises
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if torch.is_tensor(out):
                ranks[n.name] = out.ndim
            return out

    try:
        with torch.no_grad():
            Ranks(gm).run(example[:2])  # two samples tell every rank
    except Exception as e:  # the ANN's own error (shapes, dtypes) on this input
        raise InputError(
            f"the ANN cannot run on the calibration data of shape {tuple(example.shape)} and dtype "
            f"{example.dtype} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); give inputs "
            f"shaped and normalised like the ANN's training inputs"
        ) from None
    return ranks


def node_arg(node: fx.Node, pos: int, name: str, default):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _dims(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def input_rank(node: fx.Node, ranks: dict[str, int] | None) -> int | None:
    """The rank of the tensor ``node`` works on (its first tensor argument); None if unknown."""
    if ranks is None:
        return None
    first = node.args[0] if node.args else None
    if isinstance(first, (tuple, list)) and first:
        first = first[0]
    r = ranks.get(first.name, -1) if isinstance(first, fx.Node) else -1
    return r if r >= 0 else None


class _DimNormaliser:
    """Dims as the operation sees them: a negative dim counts from the end of a tensor of rank
    ``rank``; unknown rank: a negative dim may be dim 0 (``unknown`` records that)."""

    def __init__(self, rank: int | None):
        self.rank = rank
        self.unknown = False

    def __call__(self, d, extra: int = 0):
        if not isinstance(d, int) or d >= 0:
            return d
        if self.rank is None:
            self.unknown = True
            return 0 if d <= -2 else d  # -1 of a batched tensor is never dim 0
        return d + self.rank + extra


def batch_dim_problem(node: fx.Node, rank: int | None = None) -> str | None:
    """Why ``node`` acts on dim 0 (the batch, into which time is folded), or None.  ``rank``: of
    the tensor it works on, to resolve negative dims (unknown: a negative dim that may be dim 0 is
    refused)."""
    norm = _DimNormaliser(rank)
    why = _batch_dim_reason(node, norm)
    if why and norm.unknown:
        why += " (a negative dim whose tensor rank is unknown: give non-negative dims or calibration data)"
    return why


def _batch_dim_reason(node: fx.Node, norm: _DimNormaliser) -> str | None:
    t, op = node.target, node.op
    if op == "call_method":
        if t in ("mean", "sum"):
            dims = node_arg(node, 1, "dim", None)
            if dims is None or 0 in [norm(d) for d in _dims(dims)]:
                return f".{t}() reduces over dim 0" if dims is not None else f".{t}() reduces over all dims"
        if t == "squeeze" and 0 in [norm(d) for d in _dims(node_arg(node, 1, "dim", None))]:
            return f".{t}() changes dim 0"
        if t == "unsqueeze" and 0 == norm(node_arg(node, 1, "dim", None), extra=1):
            return f".{t}() changes dim 0"
        swapped = (norm(node_arg(node, 1, "dim0", None)), norm(node_arg(node, 2, "dim1", None)))
        if t == "transpose" and 0 in swapped:
            return ".transpose() moves dim 0"
        if t == "permute":
            order = node.args[1:] if len(node.args) > 2 else _dims(node_arg(node, 1, "dims", [0]))
            if order and norm(order[0]) != 0:
                return ".permute() moves dim 0"
        if t == "flatten" and norm(node_arg(node, 1, "start_dim", 0)) == 0:
            return ".flatten() starts at dim 0 (give start_dim=1)"
        if t == "unflatten" and norm(node_arg(node, 1, "dim", None)) == 0:
            return ".unflatten(0, ...) splits dim 0"
        if t in ("view", "reshape"):
            shape = node.args[1:] if len(node.args) > 2 else _dims(node_arg(node, 1, "shape", []))
            if len(shape) < 2 or (isinstance(shape[0], int) and shape[0] != -1):
                return f".{t}{tuple(shape)} does not keep dim 0 (use x.{t}(x.size(0), ...))"
    if op == "call_function":
        if t in (torch.mean, torch.sum):
            dims = node_arg(node, 1, "dim", None)
            if dims is None or 0 in [norm(d) for d in _dims(dims)]:
                return f"torch.{t.__name__} reduces over " + ("dim 0" if dims is not None else "all dims")
        if t is torch.flatten and norm(node_arg(node, 1, "start_dim", 0)) == 0:
            return "torch.flatten starts at dim 0 (give start_dim=1)"
        if t is torch.cat and norm(node_arg(node, 1, "dim", 0)) == 0:
            return "torch.cat joins along dim 0"
        if t is torch.reshape:
            shape = _dims(node_arg(node, 1, "shape", []))
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
        if isinstance(m, nn.Flatten) and norm(m.start_dim) == 0:
            return "nn.Flatten(start_dim=0) flattens dim 0"
    return None
