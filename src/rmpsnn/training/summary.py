"""What a run reports: the line of each epoch, and at the end ``summary.json`` (also for a
``--resume`` of a run that is already done)."""

from __future__ import annotations

import contextlib
import json

from ..io import write_json
from .rundir import read_metrics

__all__ = ["already_finished", "epoch_line", "finish", "summary"]


def already_finished(trainer) -> dict:
    """``--resume`` of a run that has done all its epochs: report it, change nothing."""
    trainer.log(
        f"{trainer.run_dir} already finished its {trainer.cfg.optim.epochs} epochs; nothing to resume"
    )
    path = trainer.run_dir / "summary.json"
    if path.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(path.read_text())
    # killed between the last checkpoint and the summary: write it from the last epoch's record
    # (no collective calls here: every process takes this path, whatever the files say)
    recs = read_metrics(trainer.run_dir / "metrics.jsonl")
    result = summary(trainer, recs[-1] if recs else {})
    if trainer.dist.is_main:
        write_json(path, result)
    return result


def summary(trainer, last: dict) -> dict:
    """The run's summary (``summary.json``) after its last epoch record ``last``."""
    return {
        "run_dir": str(trainer.run_dir),
        "epochs_done": trainer.epoch,
        "best_test_accuracy": trainer.best_accuracy,
        "final": {k: v for k, v in last.items() if k != "per_layer"},
        "per_layer_quantization_error": last.get("per_layer"),
        "seconds": trainer.elapsed,
        "processes": trainer.dist.world_size,
    }


def finish(trainer, last: dict) -> dict:
    """Write the summary (rank 0), checking under DDP that every process ends with the same
    weights, and log the end."""
    result = summary(trainer, last)
    if trainer.dist.enabled:  # all processes must end with identical weights
        result["ranks_in_sync"] = trainer.dist.in_sync(trainer.model)
    if trainer.dist.is_main:
        write_json(trainer.run_dir / "summary.json", result)
    where = "" if trainer.temporary else f"; run directory {trainer.run_dir}"
    trainer.log(f"done: best test accuracy {trainer.best_accuracy:.4f}{where}")
    return result


def epoch_line(trainer, rec: dict) -> str:
    """The line an epoch prints: its loss parts, accuracies, quantisation error and speed."""
    test = f"  test {rec['test_accuracy']:.4f}" if "test_accuracy" in rec else ""
    if rec.get("quantization_error") is not None:
        test += f"  q-err {rec['quantization_error']:.4f}"
    if trainer.spiking:
        parts = [f"{m.upper() if len(m) <= 3 else m} {rec[m]:.4f}" for m in trainer.objective.metrics]
        lam = [f"λ {rec['lambda']:.3f}"] if "lambda" in rec else []
        loss = "  ".join([*parts, *lam])
    else:
        loss = f"loss {rec['ce']:.4f}"
    return (
        f"epoch {rec['epoch']:>3}/{trainer.cfg.optim.epochs}  {loss}  "
        f"train {rec['train_accuracy']:.4f}{test}  "
        f"({rec['epoch_seconds']:.0f} s, {rec['train_images_per_s']:.0f} img/s)"
    )
