"""What the NIR writer and reader share: the nir package, dt conventions per consumer, array
and metadata helpers."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import InputError, NIRExportError

__all__ = [
    "DT",
    "TARGET_DT",
    "GraphEdit",
    "as_float32",
    "nir_package",
    "node_meta",
    "resolve_dt",
    "whole_pair",
]

DT = 1.0


def nir_package():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - nir is a dependency
        raise ImportError("NIR export needs the nir package: pip install nir") from e
    return nir


def as_float32(t) -> np.ndarray:
    return (
        t.detach().cpu().double().numpy().astype(np.float32)
        if torch.is_tensor(t)
        else np.asarray(t, np.float32)
    )


def whole_pair(v) -> tuple[int, int]:
    """One number or two (height, width) as a pair of ints."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise NIRExportError(f"expected one or two numbers, got {v!r}") from e
    if a.ndim > 1 or a.size not in (1, 2) or not np.isfinite(a).all() or (a != np.round(a)).any():
        raise NIRExportError(f"expected one or two whole numbers, got {a.tolist()}")
    a = a.reshape(-1).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


# The time step each consumer's NIR importer assumes (what it divides tau by); export with the
# consumer's dt so that its discretisation gives back rmpsnn's u[t] = β u[t-1] + x[t].
TARGET_DT = {"rmpsnn": 1.0, "snntorch": 1e-4, "norse": 1e-3, "spikingjelly": 1e-4}


def resolve_dt(dt: float | None, target: str | None) -> float:
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


def node_meta(node) -> dict:
    meta = getattr(node, "metadata", None) or {}
    return meta.get("rmpsnn", {}) if isinstance(meta.get("rmpsnn", {}), dict) else {}


class GraphEdit:
    """Nodes and edges of a NIR graph being written, and the edits the writer and the portable
    rewrites make on them."""

    def __init__(self):
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []

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
