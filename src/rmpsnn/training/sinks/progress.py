"""A progress bar per epoch on the terminal (``run.progress``: on, off, or auto = when stderr is
a terminal)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from .base import SINKS, Sink


class ProgressSink(Sink):
    def __init__(self, epochs: int):
        self.epochs, self.bar = epochs, None

    def epoch_start(self, epoch: int, steps: int, done: int) -> None:
        desc = f"epoch {epoch + 1}/{self.epochs}"
        self.bar = tqdm(total=steps, initial=done, desc=desc, leave=False, dynamic_ncols=True)

    def step(self, values: dict[str, float]) -> None:
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)

    def epoch_end(self, record: dict) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@SINKS.register("progress", help="a tqdm bar per epoch (run.progress)")
def progress_sink(trainer) -> ProgressSink | None:
    mode = trainer.cfg.run.progress
    show = mode == "on" or (mode == "auto" and sys.stderr.isatty())
    return ProgressSink(trainer.cfg.optim.epochs) if show else None
