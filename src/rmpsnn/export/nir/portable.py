"""Rewriting an exported graph into what other tools' NIR importers read (``portable=True``,
or a ``target``): unit thresholds, folded scales and input gains, sum pools for Norse, and the
refusal of initial potentials NIR cannot express."""

from __future__ import annotations

import numpy as np

from ...errors import NIRExportError
from .common import GraphEdit, node_meta

__all__ = [
    "fold_scales",
    "make_portable",
    "refuse_initial_potentials",
    "sum_pools_for_norse",
    "unit_thresholds",
]


def sum_pools_for_norse(nir, b: GraphEdit) -> list[str]:
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


def make_portable(nir, b: GraphEdit, fold_r: bool) -> list[str]:
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
            # rmpsnn's read-out is u[T] ("final") or u[T]/T ("mean"): say which the consumer computes
            how = "average" if node_meta(node).get("readout", "final") == "mean" else "sum"
            changed.append(
                f"{name}: the integrating read-out left out ({how} the outputs over time for rmpsnn's logits)"
            )
    return changed


def fold_scales(nir, b: GraphEdit) -> list[str]:
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


def unit_thresholds(nir, b: GraphEdit) -> list[str]:
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


def refuse_initial_potentials(nir, b: GraphEdit, target: str | None) -> None:
    """NIR has no initial potential: other tools start every neuron at 0, so a converted SNN
    started at θ/2 (``v_init="half"``) would run as a different network there."""
    started = [
        k
        for k, n in b.nodes.items()
        if isinstance(n, nir.IF) and node_meta(n).get("v_init", "none") not in ("none", None, 0, 0.0)
    ]
    if started:
        v_init = node_meta(b.nodes[started[0]])["v_init"]
        raise NIRExportError(
            f"{started[0]}: the neurons start at v_init={v_init!r}, which NIR cannot express; "
            f"{target or 'other tools'} would start them at 0 (a different network). Convert with "
            f"v_init=None to export for other tools, or export for rmpsnn (target='rmpsnn' or no target: "
            f"rmpsnn's from_nir restores it)"
        )
