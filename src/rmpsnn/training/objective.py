"""The training objective: a sum of registered loss terms, ``L = Σ_k w_k(n) · L_k``.

Each term is one file under :mod:`rmpsnn.training.loss_terms` that registers a factory in
:data:`LOSS_TERMS`: ``factory(cfg: TrainConfig, **loss.kwargs) -> LossTerm``.  ``loss.kind``
chooses the main term (``ce``: cross-entropy on the read-out; ``tet``: TET's per-step loss), and
the ``rmp`` term (RMP-Loss with its λ schedule, ``rmp.*``) is always added -- with weight 0 and
nothing recorded when it is off, so every run logs the same ``rmp`` and ``lambda`` columns.

A term sees one :class:`Forward` (the read-out, the labels and, when it asks for them, the
pre-spike potentials with their neurons' thresholds and the per-step outputs ``O_t``) and
returns ``{metric: (value, weight)}``; the trainer logs each metric's mean over the epoch.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..neurons import MembraneRecorder, OutputIntegrator
from ..registry import Registry

__all__ = ["LOSS_TERMS", "Forward", "LossTerm", "Objective", "build_objective"]

LOSS_TERMS: Registry = Registry("loss term", error=ConfigError)


@dataclass
class Forward:
    """What one training forward pass produced (``float32`` whatever the autocast dtype)."""

    out: torch.Tensor  # the read-out [B, K] (what accuracy is measured on)
    y: torch.Tensor  # the labels [B]
    membranes: list[torch.Tensor] = field(default_factory=list)  # u_pre [T, B, ...] per layer
    thresholds: list = field(default_factory=list)  # the threshold of each membrane's neurons
    steps: torch.Tensor | None = None  # per-step outputs O_t [T, B, K] (the read-out's input)


class LossTerm:
    """One part of the objective.  ``metrics`` names what :meth:`__call__` returns, in order;
    ``needs_membranes`` / ``needs_steps`` ask the step to record them."""

    metrics: tuple[str, ...] = ()
    needs_membranes: bool = False
    needs_steps: bool = False

    def __call__(self, fwd: Forward, progress: float) -> dict[str, tuple[torch.Tensor, float]]:
        """``{metric: (value, weight)}`` at ``progress`` (the fractional epoch)."""
        raise NotImplementedError

    def logged(self, progress: float) -> dict[str, float]:
        """Scalars worth a column of their own (e.g. RMP-Loss's λ), at ``progress``."""
        return {}


def _make_term(name: str, cfg, kwargs: dict) -> LossTerm:
    factory = LOSS_TERMS.get(name)
    params = inspect.signature(factory).parameters
    allowed = [p for p in params if p != "cfg"]
    unknown = [k for k in kwargs if k not in params or k == "cfg"]
    if unknown:
        raise ConfigError(
            f"loss.kwargs.{unknown[0]} is not an option of loss term {name!r}; its options: "
            f"{', '.join(allowed) or '(none)'}"
        )
    try:
        return factory(cfg, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss term {name!r} with loss.kwargs={kwargs}: {e}") from e


class Objective:
    """The terms of a run and the forward pass that feeds them."""

    def __init__(self, terms: list[LossTerm]):
        self.terms = terms
        self.metrics: list[str] = []
        for t in terms:
            self.metrics += [m for m in t.metrics if m not in self.metrics]
        self.needs_membranes = any(t.needs_membranes for t in terms)
        self.needs_steps = any(t.needs_steps for t in terms)

    def check(self, model: torch.nn.Module) -> None:
        """Fail before the run starts when ``model`` cannot give what the terms need."""
        if self.needs_steps:
            _readout(model)
        if self.needs_membranes:
            MembraneRecorder(model)  # raises when the model has no spiking neurons

    def logged_names(self) -> list[str]:
        return [k for t in self.terms for k in t.logged(0.0)]

    def forward(self, model: torch.nn.Module, run, x: torch.Tensor, y: torch.Tensor) -> Forward:
        """``run(x)`` (the model, or its DDP wrapper) with the recordings the terms need from
        ``model``."""
        captured: list[torch.Tensor] = []
        with contextlib.ExitStack() as stack:
            rec = stack.enter_context(MembraneRecorder(model)) if self.needs_membranes else None
            if self.needs_steps:
                handle = _readout(model).register_forward_hook(lambda m, i, o: captured.append(i[0]))
                stack.callback(handle.remove)
            out = run(x)
        fwd = Forward(out.float(), y)
        if rec is not None:
            fwd.membranes = [u.float() for u in rec.membranes]
            fwd.thresholds = list(rec.thresholds)
        if self.needs_steps:
            steps = captured[-1] if captured else None
            if steps is None or steps.ndim != 2 + (out.ndim - 1):
                raise ConfigError(
                    "this loss needs per-step outputs [T, B, classes] going into the read-out "
                    "(OutputIntegrator); the model's read-out got none in multi-step form"
                )
            fwd.steps = steps.float()
        return fwd

    def __call__(self, fwd: Forward, progress: float):
        """``(loss, {metric: detached value}, {metric: weight}, logged scalars)``."""
        loss = None
        values: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        logged: dict[str, float] = {}
        for term in self.terms:
            for name, (value, weight) in term(fwd, progress).items():
                if weight:
                    loss = weight * value if loss is None else loss + weight * value
                values[name] = value.detach()
                weights[name] = weight
            logged.update(term.logged(progress))
        if loss is None:  # every weight 0 at this point of the schedule
            loss = torch.zeros((), device=fwd.out.device, requires_grad=True)
        return loss, values, weights, logged


def _readout(model: torch.nn.Module) -> OutputIntegrator:
    found = [m for m in model.modules() if isinstance(m, OutputIntegrator)]
    if len(found) != 1:
        raise ConfigError(
            f"this loss needs the per-step outputs that go into the model's read-out, and "
            f"{type(model).__name__} has {len(found)} OutputIntegrator read-outs (it needs one, as "
            f"the spiking models have); use loss.kind=ce"
        )
    return found[0]


def build_objective(cfg) -> Objective:
    """The objective of ``cfg``: ``loss.kind`` (with ``loss.kwargs``) plus RMP-Loss."""
    from . import loss_terms  # noqa: F401  (registers the built-in terms)

    main = _make_term(cfg.loss.kind, cfg, dict(cfg.loss.kwargs))
    return Objective([main, _make_term("rmp", cfg, {})])
