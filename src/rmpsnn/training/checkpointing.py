"""A run's checkpoints: ``last.safetensors`` (the full training state for an exact resume: model,
optimizer, scheduler, AMP scaler, progress, RNG states and the epoch's partial sums, written
atomically by :func:`~rmpsnn.training.state.save_state`) and ``best.safetensors`` (the model with
the best test accuracy, for evaluate/export).  A checkpoint is only written, and called good,
when every weight and buffer is finite."""

from __future__ import annotations

import json
import random

import torch

from ..checkpoint import describe_nonfinite, nonfinite_tensors, save_model
from ..config import config_to_dict
from ..errors import CheckpointError, NonFiniteError, one_line
from .state import check_resume_state, load_state, save_state

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of ``trainer``'s run (its model, optimizer, progress and run directory)."""

    def __init__(self, trainer):
        self.t = trainer
        self.saved = (0, 0)  # (epoch, step) of the last checkpoint written

    @property
    def last_path(self):
        return self.t.run_dir / "last.safetensors"

    def info(self) -> dict:
        norm = self.t.data.norm
        return {
            "mean": norm[0] if norm else None,
            "std": norm[1] if norm else None,
            "config": config_to_dict(self.t.cfg),
            "data": self.t.data.info,
        }

    def state_dict(self, partial: torch.Tensor) -> dict:
        t = self.t
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict() if t.scaler else None,
            "progress": {
                "epoch": t.epoch,
                "step": t.step,
                "global_step": t.global_step,
                "best_accuracy": t.best_accuracy,
                "elapsed": t.elapsed,
            },
            "partial": partial,
            "rng": rng,
        }

    def save(self) -> None:
        """Write ``last.safetensors`` (rank 0; the other processes hold the same state).  Called by
        every process together: the epoch's partial sums are those of all processes."""
        t = self.t
        partial = t.partial.clone()
        n = t.counted
        partial[:n] = t.dist.all_reduce(partial[:n].clone())
        self.check_finite()
        if t.dist.is_main:
            meta = {
                "model": t.cfg.model.name,
                "kwargs": json.dumps(t.model_kwargs),
                "info": json.dumps(self.info()),
            }
            save_state(self.last_path, self.state_dict(partial), meta)
        self.saved = (t.epoch, t.step)

    def save_best(self, epoch: int, ev: dict) -> None:
        """``best.safetensors``: the model after ``epoch`` (0-based) with its evaluation ``ev``."""
        t = self.t
        self.check_finite()
        if t.dist.is_main:
            save_model(
                t.run_dir / "best.safetensors",
                t.model,
                model_name=t.cfg.model.name,
                model_kwargs=t.model_kwargs,
                epoch=epoch + 1,
                test_accuracy=ev["accuracy"],
                quantization_error=ev["quantization_error"],
                **self.info(),
            )

    def kept(self, lead: str) -> str:
        """Where the last good checkpoint is, for an error message (nothing for a throw-away run)."""
        if self.t.temporary:
            return ""
        return (
            f"{lead}the last good checkpoint {self.last_path} (epoch "
            f"{self.saved[0] + 1}, step {self.saved[1]}) is kept"
        )

    def check_finite(self) -> None:
        bad = nonfinite_tensors(self.t.model)
        if bad:
            raise NonFiniteError(
                f"{describe_nonfinite(bad)} by epoch {self.t.epoch + 1}, step {self.t.step}; they are "
                f"not saved{self.kept(', and ')}. Start a new run with a lower optim.lr or with "
                f"optim.grad_clip set"
            )

    def load(self) -> None:
        """Restore the whole training state from ``last.safetensors``."""
        t, path = self.t, self.last_path
        state, _ = load_state(path)
        check_resume_state(
            state, path, epochs=t.cfg.optim.epochs, steps_per_epoch=t.steps_per_epoch,
            partial_size=t.partial.numel(),
        )  # fmt: skip
        try:
            t.model.load_state_dict(state["model"])
            t.optimizer.load_state_dict(state["optimizer"])
            t.scheduler.load_state_dict(state["scheduler"])
            if t.scaler is not None and state["scaler"] is not None:
                t.scaler.load_state_dict(state["scaler"])
            p = state["progress"]
            t.epoch, t.step, t.global_step = p["epoch"], p["step"], p["global_step"]
            self.saved = (t.epoch, t.step)
            t.best_accuracy, t.elapsed = p["best_accuracy"], p["elapsed"]
            partial = state["partial"].double()
            if partial.shape != t.partial.shape:
                raise ValueError(
                    f"partial sums of shape {tuple(partial.shape)}, expected {tuple(t.partial.shape)}"
                )
            # the saved sums are those of all processes so far: count them once, on rank 0
            t.partial = partial * (1.0 if t.dist.is_main else 0.0)
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
            detail = one_line(e, 300)  # one line, whatever torch's message holds
            raise CheckpointError(f"{path} does not match this run's model or optimizer: {detail}") from e
