"""Where a run's progress and per-epoch records go.  A sink is one file: a :class:`Sink` subclass
and a factory ``f(trainer) -> Sink | None`` registered in :data:`SINKS` (``None``: off for this
run's configuration).  The trainer calls sinks on the main process only, in registration order.

What a factory may read from the trainer: ``run_dir``, ``cfg`` (the :class:`TrainConfig`) and
``columns`` (the record's scalar fields, in order: the CSV header)."""

from __future__ import annotations

from ...errors import ConfigError
from ...registry import Registry

__all__ = ["SINKS", "Sink"]

SINKS: Registry = Registry("metrics sink", error=ConfigError)


class Sink:
    """Hooks of one run; every one is optional."""

    def start(self, resume: bool, epochs_done: int) -> None:
        """Before the first step; on ``resume``, drop what was written after the checkpoint
        (epochs past ``epochs_done``, redone now)."""

    def epoch_start(self, epoch: int, steps: int, done: int) -> None:
        """Epoch ``epoch`` (0-based) of ``steps`` steps begins, ``done`` of them already done."""

    def step(self, values: dict[str, float]) -> None:
        """One training step ended with these loss parts."""

    def epoch_end(self, record: dict) -> None:
        """The epoch's record (``epoch`` is 1-based; ``per_layer`` only after an evaluation)."""

    def close(self) -> None:
        """The run ended (normally or not)."""
