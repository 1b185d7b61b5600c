"""The training engine behind ``rmpsnn train`` (and ``train-ann``): direct training of a spiking
model with surrogate gradients, run directories, exact resume, AMP and distributed data parallel.

The pieces it plugs together (Lightning's split, at this project's size):

- the **objective** (:mod:`.objective`): registered loss terms, ``L = Σ_k w_k(n) · L_k`` -- by
  default cross-entropy on the read-out plus RMP-Loss ``λ(n) · L_RMP`` (RMP-Loss eq. 11, λ of
  eq. 12 at the fractional epoch ``n``); ``loss.kind=tet`` for TET;
- **sinks** (:mod:`.sinks`): ``metrics.jsonl``, ``metrics.csv``, TensorBoard, the progress bar;
- **checkpoints** (:mod:`.checkpointing`) and **evaluation** (:mod:`.evaluate`: test accuracy and
  the quantisation error per layer, each against its neurons' own threshold).

A run directory holds::

    config.yaml            the resolved configuration (a resumed run reads it back)
    metrics.jsonl / .csv   one record per epoch: loss parts, λ, lr, accuracies, quantisation
                           error, throughput (the JSONL record also has the per-layer errors)
    log.txt                the lines printed to the terminal
    last.safetensors       the full training state, written atomically
    best.safetensors       the model with the best test accuracy so far (for evaluate/export)
    summary.json           written when the run finishes
    tensorboard/           when run.tensorboard is on

``--resume RUN_DIR`` restores the last checkpoint and replays the data order from the exact
batch where it was written, so a run that was killed ends with the same weights as one that
was not (checked by the test suite on CPU).
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from ..config import config_to_dict
from ..errors import ConfigError, NonFiniteError
from ..io import write_text
from ..limits import check_simulation
from ..models import create
from ..models.registry import list_models
from . import sinks as _sinks  # noqa: F401  (registers the built-in sinks)
from .checkpointing import Checkpoints
from .config import TrainConfig, apply_overrides, load_config
from .distributed import init_distributed
from .evaluate import evaluate_model
from .objective import build_objective
from .optim import build_optimizer
from .rundir import RunLock, remove_stale_temp_files, resume_config
from .setup import build_data, model_kwargs
from .sinks.base import SINKS
from .summary import already_finished, epoch_line, finish

__all__ = ["Trainer", "train"]

_TAIL_COLUMNS = (
    "loss",
    "train_accuracy",
    "test_accuracy",
    "quantization_error",
    "quantization_mse",
    "train_images_per_s",
    "epoch_seconds",
    "eval_seconds",
)


class Trainer:
    """Builds everything a run needs from a :class:`TrainConfig` and runs it (:meth:`fit`)."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        log: Callable | None = None,
        temporary: bool = False,
    ):
        """``temporary``: the run directory is deleted afterwards (e.g. by :func:`train_ann`), so
        error messages do not point to its checkpoints."""
        self.cfg = cfg
        self.temporary = temporary
        self.dist = init_distributed(cfg.run.device)
        self.device = self.dist.device
        self.run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir()
        self._print = log or print
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        self.data = build_data(cfg, self.dist)
        self.spiking = cfg.model.name in list_models("snn")  # an ANN trains with the same loop
        self.model_kwargs = model_kwargs(cfg, self.data)
        self.model = create(cfg.model.name, **self.model_kwargs).to(self.device)
        self.objective = build_objective(cfg)
        self.objective.check(self.model)
        self.steps_per_epoch = len(self.data.train)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"optim.batch_size={cfg.optim.batch_size} is larger than the training set "
                f"({self.data.info['train_images']} images); lower it"
            )
        # the model takes the data's images, and T x batch of activations fit: checked before any work
        check_simulation(
            self.model, self.data.input_shape, timesteps=getattr(self.model, "timesteps", None) or 1,
            batch_size=cfg.optim.batch_size, training=True, time_major=self.data.time_major,
            what=f"model {cfg.model.name}", lower="lower model.timesteps or optim.batch_size",
            error=ConfigError,
        )  # fmt: skip
        o = cfg.optim
        self.optimizer, self.scheduler = build_optimizer(self.model, o, self.steps_per_epoch)
        amp = o.amp == "on" or (o.amp == "auto" and self.device.type == "cuda")
        self.amp_dtype = (torch.float16 if self.device.type == "cuda" else torch.bfloat16) if amp else None
        self.scaler = torch.amp.GradScaler("cuda") if amp and self.device.type == "cuda" else None
        self.train_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        # progress of the run (what a checkpoint stores besides the modules)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.best_accuracy, self.elapsed = -1.0, 0.0
        # partial sums of the epoch: each metric * batch, correct, seen (summed over processes), seconds
        self.counted = len(self.objective.metrics) + 2
        self.partial = torch.zeros(self.counted + 1, dtype=torch.float64)
        parts = [*self.objective.logged_names(), *self.objective.metrics]
        self.columns = ["epoch", "global_step", "lr", *parts, *_TAIL_COLUMNS]  # metrics.csv's header
        self.checkpoints = Checkpoints(self)
        self.sinks: list = []
        self.history: list[dict] = []  # the epoch records of this process's fit()
        self.command = "train" if self.spiking else "train-ann"  # what resumes this run
        self.lock = RunLock(self.run_dir, option="run.out", command=self.command)

    def log(self, line: str) -> None:
        if not self.dist.is_main:
            return
        self._print(line)
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(line + "\n")

    def _emit(self, hook: str, *args) -> None:
        for sink in self.sinks:
            getattr(sink, hook)(*args)

    def save_checkpoint(self) -> None:
        """Write ``last.safetensors`` now (every process together; see :class:`Checkpoints`)."""
        self.checkpoints.save()

    # -- the loop
    def prepare_run_dir(self, resume: bool) -> None:
        """Take the run directory's lock (rank 0), clear what a killed process left, and on a new
        run write the configuration."""
        if self.dist.is_main:
            self.lock.acquire()
            remove_stale_temp_files(self.run_dir)
            if not resume:
                if (self.run_dir / "last.safetensors").exists() and not self.cfg.run.overwrite:
                    raise ConfigError(
                        f"run directory {self.run_dir} already holds a run; continue it with "
                        f"`rmpsnn {self.command} --resume {self.run_dir}`, or set run.out=... or "
                        f"run.overwrite=true"
                    )
                self.run_dir.mkdir(parents=True, exist_ok=True)
                for name in ("metrics.jsonl", "metrics.csv", "log.txt", "summary.json", "best.safetensors"):
                    (self.run_dir / name).unlink(missing_ok=True)
                write_text(
                    self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
                )
        self.dist.barrier()

    def _train_step(self, x, y, progress: float):
        """Forward and objective of one batch: ``(loss, {metric: value}, read-out)``."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype
            else contextlib.nullcontext()
        )
        with autocast:
            fwd = self.objective.forward(self.model, self.train_model, x, y)
        loss, values, self._weights, self._logged = self.objective(fwd, progress)
        return loss, values, fwd.out.detach()

    def _optimize(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step (with AMP's loss scaling and the gradient clip)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()

    def _agree(self, bad: bool, save_now: bool) -> tuple[bool, bool]:
        """Under DDP every process must take the same branch: any one's NaN or rank 0's clock."""
        if not self.dist.enabled:
            return bad, save_now
        flags = self.dist.all_reduce(torch.tensor([float(bad), float(save_now and self.dist.is_main)]), "max")
        return bool(flags[0]), bool(flags[1])

    def _train_epoch(self, epoch: int, clock: dict) -> None:
        """The steps of ``epoch`` from ``self.step`` on, checkpointing on the way as configured."""
        cfg = self.cfg
        self._emit("epoch_start", epoch, self.steps_per_epoch, self.step)
        t0 = time.perf_counter()
        for x, y in self.data.train.iterate(self.step):
            x = self.data.prepare(x, self.device)
            y = y.to(self.device, non_blocking=True)
            loss, values, out = self._train_step(x, y, epoch + self.step / self.steps_per_epoch)
            save_now = cfg.run.checkpoint_every and (self.global_step + 1) % cfg.run.checkpoint_every == 0
            save_now = save_now or time.monotonic() - clock["last_save"] > cfg.run.checkpoint_minutes * 60
            bad, save_now = self._agree(not bool(torch.isfinite(loss)), save_now)
            if bad:
                raise NonFiniteError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {self.step + 1} (global "
                    f"step {self.global_step + 1}){self.checkpoints.kept('; ')}. Start a new run with a "
                    f"lower optim.lr (now {self.scheduler.get_last_lr()[0]:.3g}) or with optim.grad_clip set"
                )
            self._optimize(loss)
            b = len(y)
            sums = [float(values[m]) * b for m in self.objective.metrics]
            self.partial += torch.tensor(
                [*sums, float((out.argmax(1) == y).sum()), b, 0.0], dtype=torch.float64
            )
            self.step += 1
            self.global_step += 1
            self._emit("step", {m: float(values[m]) for m in self.objective.metrics})
            if save_now and self.step < self.steps_per_epoch:
                self.partial[-1] += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._checkpoint(clock)
        self.partial[-1] += time.perf_counter() - t0

    def _checkpoint(self, clock: dict) -> None:
        self.elapsed = clock["elapsed0"] + time.perf_counter() - clock["segment"]
        self.save_checkpoint()
        clock["last_save"] = time.monotonic()

    def _start(self, resume: bool) -> bool:
        """Prepare the run directory and the state (fresh or resumed); False when there is
        nothing left to do."""
        cfg = self.cfg
        self.prepare_run_dir(resume)
        if self.dist.is_main:
            self.sinks = [s for s in (SINKS.get(n)(self) for n in SINKS.names()) if s is not None]
        if resume:
            self.checkpoints.load()
            self._emit("start", True, self.epoch)
            if self.epoch >= cfg.optim.epochs:
                return False
            self.log(
                f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.step}/{self.steps_per_epoch}"
            )
            return True
        self._emit("start", False, 0)
        n_params = sum(p.numel() for p in self.model.parameters())
        rmp = f"on (k={cfg.rmp.k:g}, p={cfg.rmp.p:g})" if cfg.rmp.enabled else "off"
        loss = f"loss {cfg.loss.kind}, RMP-Loss {rmp}, " if self.spiking else ""
        self.log(
            f"{cfg.model.name} ({n_params / 1e6:.2f} M parameters"
            + (f"), T={cfg.model.timesteps}, " if self.spiking else ", ANN), ")
            + f"{cfg.data.dataset}: {self.data.info['train_images']} train / "
            f"{self.data.info['test_images']} test images, {self.steps_per_epoch} steps/epoch, "
            + loss
            + f"device {self.device}"
            + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
        )
        self.save_checkpoint()  # a run killed in its first minutes can still be resumed
        return True

    def fit(self, resume: bool = False) -> dict:
        """Train for ``optim.epochs`` (from the checkpoint when ``resume``); returns the summary."""
        cfg = self.cfg
        if not self._start(resume):
            return already_finished(self)
        clock = {"last_save": time.monotonic(), "segment": time.perf_counter(), "elapsed0": self.elapsed}
        summary = {}
        while self.epoch < cfg.optim.epochs:
            epoch = self.epoch
            self.data.train.set_epoch(epoch)
            self.train_model.train()
            self._logged = {k: 0.0 for k in self.objective.logged_names()}
            self._weights = {}
            self._train_epoch(epoch, clock)
            summary = self._end_epoch(epoch)
            self.epoch, self.step = epoch + 1, 0
            self.partial.zero_()
            self._checkpoint(clock)
            budget = cfg.run.time_budget_min
            if budget is not None and self.elapsed > budget * 60 and self.epoch < cfg.optim.epochs:
                self.log(f"time budget of {budget:g} min reached after {self.epoch} epochs; stopping")
                break
        return finish(self, summary)

    def run(self, resume: bool = False) -> dict:
        """:meth:`fit`, then release the sinks, the run directory's lock and the process group,
        whatever happens."""
        try:
            return self.fit(resume=resume)
        finally:
            self._emit("close")
            self.lock.release()
            self.dist.close()

    def _record(self, epoch: int) -> dict:
        """The training part of ``epoch``'s record: the metrics' means over all processes."""
        sums = self.dist.all_reduce(self.partial.clone())
        M = len(self.objective.metrics)
        seen = max(sums[M + 1].item(), 1.0)
        seconds = self.partial[-1].item()  # this process's time (all run in step)
        means = {m: sums[i].item() / seen for i, m in enumerate(self.objective.metrics)}
        loss = sum(self._weights.get(m, 1.0 if i == 0 else 0.0) * v for i, (m, v) in enumerate(means.items()))
        return {
            "epoch": epoch + 1,
            "global_step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            **self._logged,
            **means,
            "loss": loss,
            "train_accuracy": sums[M].item() / seen,
            "train_images_per_s": seen / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }

    def _end_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        rec = self._record(epoch)
        if (epoch + 1) % cfg.run.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
            t0 = time.perf_counter()
            ev = evaluate_model(
                self.model, self.data.test(), device=self.device, dist=self.dist, data=self.data
            )
            rec.update(
                test_accuracy=ev["accuracy"],
                quantization_error=ev["quantization_error"],
                quantization_mse=ev["quantization_mse"],
                per_layer=ev["per_layer"],
                eval_seconds=time.perf_counter() - t0,
            )
            if ev["accuracy"] > self.best_accuracy:
                self.best_accuracy = ev["accuracy"]
                self.checkpoints.save_best(epoch, ev)
        self._emit("epoch_end", rec)
        self.history.append(rec)
        self.log(epoch_line(self, rec))
        return rec


def train(
    config: str | Path | dict | TrainConfig | None = None,
    overrides: list[str] | dict | None = None,
    *,
    resume: str | Path | None = None,
    log: Callable | None = None,
) -> dict:
    """Run a training (``config`` + ``overrides``) or continue one (``resume=RUN_DIR``); returns
    the summary (also written to ``RUN_DIR/summary.json``)."""
    if resume is not None:
        run_dir = Path(resume)
        trainer = Trainer(resume_config(run_dir, overrides), run_dir=run_dir, log=log)
    else:
        if isinstance(config, TrainConfig):  # overrides apply to a copy; the caller's config stays
            cfg = apply_overrides(copy.deepcopy(config), overrides) if overrides else config
        else:
            cfg = load_config(config, overrides)
        trainer = Trainer(cfg, log=log)
    return trainer.run(resume=resume is not None)
