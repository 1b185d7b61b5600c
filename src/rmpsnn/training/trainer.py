"""The training loop behind ``rmpsnn train``: direct training of a spiking model with surrogate
gradients and RMP-Loss, run directories, exact resume, and distributed data parallel.

Loss (RMP-Loss eq. 11): ``CE(integrator read-out, y) + λ(n) · L_RMP``, where the read-out is
the output integrator's final potential (eq. 4; or its mean over T), ``L_RMP`` is eq. 10 over
the pre-spike potentials of every LIF layer, and λ(n) is eq. 12 at the fractional epoch ``n``
(updated every step).  Evaluation reports test accuracy and the quantisation error (mean |Dis|
and mean Dis², eq. 8) per layer and overall.

A run directory holds::

    config.yaml            the resolved configuration (a resumed run reads it back)
    metrics.jsonl / .csv   one record per epoch: loss parts, λ, lr, accuracies, quantisation
                           error, throughput (the JSONL record also has the per-layer errors)
    log.txt                the lines printed to the terminal
    last.safetensors       the full training state (model, optimizer, scheduler, AMP scaler,
                           epoch, step, RNG, partial-epoch sums), written atomically
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
import csv
import inspect
import io
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from ..checkpoint import CheckpointError, describe_nonfinite, nonfinite_tensors, save_model
from ..data import registry as data_registry
from ..data.registry import DataBundle, LoaderContext
from ..errors import NonFiniteError
from ..evaluation import top1
from ..io import write_json, write_text
from ..limits import check_simulation
from ..losses import QuantizationErrorMeter, rmp_lambda, rmp_loss
from ..models import create
from ..models.registry import builder, list_models
from ..neurons import MembraneRecorder, SpikingNeuron
from .config import ConfigError, TrainConfig, apply_overrides, config_to_dict, load_config
from .distributed import Dist, init_distributed
from .optim import build_optimizer
from .rundir import RunLock, read_metrics, remove_stale_temp_files
from .state import check_resume_state, load_state, save_state

__all__ = ["Trainer", "build_data", "evaluate_model", "resume_config", "train"]

_CSV_FIELDS = [
    "epoch",
    "global_step",
    "lr",
    "lambda",
    "ce",
    "rmp",
    "loss",
    "train_accuracy",
    "test_accuracy",
    "quantization_error",
    "quantization_mse",
    "train_images_per_s",
    "epoch_seconds",
    "eval_seconds",
]
# keys a resumed run may change: where and how it runs, not what it computes
_RESUMABLE_OVERRIDES = (
    "run.device",
    "run.progress",
    "run.tensorboard",
    "run.checkpoint_every",
    "run.checkpoint_minutes",
    "run.time_budget_min",
)


# ----------------------------------------------------------------------------- data
def build_data(cfg: TrainConfig, dist: Dist) -> DataBundle:
    """The data registry's bundle for ``cfg.data``, sharded for this process (``dist``)."""
    bs = cfg.optim.batch_size
    if bs % dist.world_size:
        raise ConfigError(
            f"optim.batch_size={bs} (the global batch) must be divisible by the {dist.world_size} processes"
        )
    ctx = LoaderContext(
        batch_size=bs // dist.world_size,
        seed=cfg.run.seed,
        timesteps=cfg.model.timesteps,
        device=dist.device,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    return data_registry.build_data(cfg.data, ctx)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_model(model, batches, *, v_th: float = 0.5, device="cpu", dist: Dist | None = None, data=None):
    """Accuracy and quantisation error (overall and per spiking layer) of ``model`` over
    ``batches`` of ``(x, y)``; under DDP the counts are summed over processes."""
    dist = dist or Dist(device=torch.device(device))
    meter = QuantizationErrorMeter(v_th)
    prepare = (lambda x: data.prepare(x, device)) if data is not None else None
    spiking = any(isinstance(m, SpikingNeuron) for m in model.modules())
    record = (
        MembraneRecorder(model, detach=True, on_record=lambda name, u: meter.update({name: u}))
        if spiking
        else contextlib.nullcontext()  # an ANN: accuracy only
    )
    with record:
        r = top1(model, batches, device=device, prepare=prepare)
    correct, n = r["correct"], r["images"]
    names = list(meter.count)  # network order (the order of the first forward; same on every rank)
    vec = torch.tensor(
        [correct, n]
        + [meter.abs_sum[k] for k in names]
        + [meter.sq_sum[k] for k in names]
        + [meter.count[k] for k in names],
        dtype=torch.float64,
    )
    vec = dist.all_reduce(vec)
    L = len(names)
    correct, n = vec[0].item(), vec[1].item()
    abs_s, sq_s, cnt = vec[2 : 2 + L], vec[2 + L : 2 + 2 * L], vec[2 + 2 * L :]
    total = cnt.sum().item()
    return {  # no spiking layer (an ANN): no quantisation error
        "accuracy": correct / max(n, 1),
        "images": int(n),
        "quantization_error": abs_s.sum().item() / total if total else None,
        "quantization_mse": sq_s.sum().item() / total if total else None,
        "per_layer": {
            k: {"mean_abs": (abs_s[i] / cnt[i]).item(), "mean_sq": (sq_s[i] / cnt[i]).item()}
            for i, k in enumerate(names)
        },
    }


# ----------------------------------------------------------------------------- trainer
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
        self.model_kwargs = self._model_kwargs()
        self.model = create(cfg.model.name, **self.model_kwargs).to(self.device)
        self.v_th = float(cfg.model.kwargs.get("v_th", 0.5))
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
        self.partial = torch.zeros(5, dtype=torch.float64)  # ce*n, rmp*n, correct, seen, seconds
        self._saved = (0, 0)  # (epoch, step) of the last checkpoint written
        self._tb = None
        self.history: list[dict] = []  # the epoch records of this process's fit()
        self.lock = RunLock(self.run_dir, option="run.out")

    # -- set-up helpers
    def _model_kwargs(self) -> dict:
        m = self.cfg.model
        params = inspect.signature(builder(m.name)).parameters
        # what the data fixes (classes, channels, size) and, for a spiking model, T and the read-out;
        # each goes to the builders that name it
        derived = {
            "num_classes": self.data.num_classes,
            "timesteps": m.timesteps,
            "readout": m.readout,
            "in_channels": self.data.in_channels,
            "image_size": self.data.image_size,
        }
        kw = {k: v for k, v in derived.items() if k in params}
        kw.update(m.kwargs)
        if kw["num_classes"] != self.data.num_classes:
            raise ConfigError(
                f"model.kwargs.num_classes={kw['num_classes']} but {self.cfg.data.dataset} has "
                f"{self.data.num_classes} classes (labels 0..{self.data.num_classes - 1}); drop the override "
                f"(the model takes the data's class count)"
            )
        if "width" in kw:
            kw["width"] = list(kw["width"])
        return kw

    def log(self, line: str) -> None:
        if not self.dist.is_main:
            return
        self._print(line)
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(line + "\n")

    def _progress(self, total: int, initial: int, desc: str):
        mode = self.cfg.run.progress
        show = self.dist.is_main and (mode == "on" or (mode == "auto" and sys.stderr.isatty()))
        if not show:
            return None
        return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)

    def _tensorboard(self):
        if not self.cfg.run.tensorboard or not self.dist.is_main:
            return None
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ConfigError(
                    "run.tensorboard=true needs the tensorboard package: pip install tensorboard"
                ) from e
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._tb

    # -- checkpoints
    def _info(self) -> dict:
        norm = self.data.norm
        return {
            "mean": norm[0] if norm else None,
            "std": norm[1] if norm else None,
            "config": config_to_dict(self.cfg),
            "data": self.data.info,
        }

    def _metadata(self, extra: dict | None = None) -> dict:
        return {
            "model": self.cfg.model.name,
            "kwargs": json.dumps(self.model_kwargs),
            "info": json.dumps({**self._info(), **(extra or {})}),
        }

    def state_dict(self, partial: torch.Tensor | None = None) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "progress": {
                "epoch": self.epoch,
                "step": self.step,
                "global_step": self.global_step,
                "best_accuracy": self.best_accuracy,
                "elapsed": self.elapsed,
            },
            "partial": partial if partial is not None else self.partial,
            "rng": rng,
        }

    def save_checkpoint(self) -> None:
        """Write ``last.safetensors`` (rank 0; the other processes hold the same state).  Called by
        every process together: the epoch's partial sums are those of all processes."""
        partial = self.partial.clone()
        partial[:4] = self.dist.all_reduce(partial[:4].clone())
        self._check_finite()
        if self.dist.is_main:
            save_state(self.run_dir / "last.safetensors", self.state_dict(partial), self._metadata())
        self._saved = (self.epoch, self.step)

    def _kept(self, lead: str) -> str:
        """Where the last good checkpoint is, for an error message (nothing for a throw-away run)."""
        if self.temporary:
            return ""
        return (
            f"{lead}the last good checkpoint {self.run_dir / 'last.safetensors'} (epoch "
            f"{self._saved[0] + 1}, step {self._saved[1]}) is kept"
        )

    def _check_finite(self) -> None:
        """A checkpoint is only written (and called good) when every weight and buffer is finite."""
        bad = nonfinite_tensors(self.model)
        if bad:
            raise NonFiniteError(
                f"{describe_nonfinite(bad)} by epoch {self.epoch + 1}, step {self.step}; they are "
                f"not saved{self._kept(', and ')}. Start a new run with a lower optim.lr or with "
                f"optim.grad_clip set"
            )

    def load_checkpoint(self, path: Path) -> None:
        state, _ = load_state(path)
        check_resume_state(state, path, epochs=self.cfg.optim.epochs, steps_per_epoch=self.steps_per_epoch)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state["scaler"] is not None:
                self.scaler.load_state_dict(state["scaler"])
            p = state["progress"]
            self.epoch, self.step, self.global_step = p["epoch"], p["step"], p["global_step"]
            self._saved = (self.epoch, self.step)
            self.best_accuracy, self.elapsed = p["best_accuracy"], p["elapsed"]
            # the saved sums are those of all processes so far: count them once, on rank 0
            self.partial = state["partial"].double() * (1.0 if self.dist.is_main else 0.0)
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
            detail = " ".join(str(e).split())[:300]  # one line, whatever torch's message holds
            raise CheckpointError(f"{path} does not match this run's model or optimizer: {detail}") from e

    # -- metrics
    def _write_metrics(self, rec: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(rec)
        tb = self._tensorboard()
        if tb is not None:
            for k in _CSV_FIELDS[2:]:
                if rec.get(k) is not None:
                    tb.add_scalar(k, rec[k], rec["epoch"])
            tb.flush()

    def _truncate_metrics(self, epochs_done: int) -> None:
        """Drop records of epochs after the checkpoint (written before a crash, redone now)."""
        if not self.dist.is_main:
            return
        path = self.run_dir / "metrics.jsonl"
        recs = [r for r in read_metrics(path) if r["epoch"] <= epochs_done]
        write_text(path, "".join(json.dumps(r) + "\n" for r in recs))
        table = io.StringIO(newline="")
        w = csv.DictWriter(table, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(recs)
        write_text(self.run_dir / "metrics.csv", table.getvalue())

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
                        f"`rmpsnn {'train' if self.spiking else 'train-ann'} --resume {self.run_dir}`, "
                        f"or set run.out=... or run.overwrite=true"
                    )
                self.run_dir.mkdir(parents=True, exist_ok=True)
                for name in ("metrics.jsonl", "metrics.csv", "log.txt", "summary.json", "best.safetensors"):
                    (self.run_dir / name).unlink(missing_ok=True)
                write_text(
                    self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
                )
        self.dist.barrier()

    def _train_step(self, x, y, epoch_frac: float):
        """Forward and loss of one batch: ``(loss, ce, rmp, λ, read-out)``."""
        cfg = self.cfg
        use_rmp = cfg.rmp.enabled and cfg.rmp.k > 0
        lam = rmp_lambda(epoch_frac, cfg.optim.epochs, cfg.rmp.k) if use_rmp else 0.0
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype
            else contextlib.nullcontext()
        )
        with autocast, MembraneRecorder(self.model) if use_rmp else contextlib.nullcontext() as rec:
            out = self.train_model(x)
        ce = F.cross_entropy(out.float(), y)
        reg = (
            rmp_loss(
                [u.float() for u in rec.membranes], v_th=self.v_th, p=cfg.rmp.p, reduction=cfg.rmp.reduction
            )
            if use_rmp
            else torch.zeros((), device=self.device)
        )
        loss = ce + lam * reg
        return loss, ce.detach(), reg.detach(), lam, out.detach()

    def fit(self, resume: bool = False) -> dict:
        """Train for ``optim.epochs`` (from the checkpoint when ``resume``); returns the summary."""
        cfg = self.cfg
        self.prepare_run_dir(resume)
        if resume:
            self.load_checkpoint(self.run_dir / "last.safetensors")
            self._truncate_metrics(self.epoch)
            if self.epoch >= cfg.optim.epochs:
                return self._already_finished()
            self.log(
                f"resumed {self.run_dir} at epoch {self.epoch + 1}, "
                f"step {self.step} of {self.steps_per_epoch}"
            )
        else:
            n_params = sum(p.numel() for p in self.model.parameters())
            rmp = f"on (k={cfg.rmp.k:g}, p={cfg.rmp.p:g})" if cfg.rmp.enabled else "off"
            self.log(
                f"{cfg.model.name} ({n_params / 1e6:.2f} M parameters"
                + (f"), T={cfg.model.timesteps}, " if self.spiking else ", ANN), ")
                + f"{cfg.data.dataset}: {self.data.info['train_images']} train / "
                f"{self.data.info['test_images']} test images, {self.steps_per_epoch} steps/epoch, "
                + (f"RMP-Loss {rmp}, " if self.spiking else "")
                + f"device {self.device}"
                + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
            )
            self.save_checkpoint()  # a run killed in its first minutes can still be resumed
        last_save = time.monotonic()
        t_segment = time.perf_counter()
        elapsed0 = self.elapsed
        summary = {}
        while self.epoch < cfg.optim.epochs:
            epoch = self.epoch
            self.data.train.set_epoch(epoch)
            self.train_model.train()
            bar = self._progress(self.steps_per_epoch, self.step, f"epoch {epoch + 1}/{cfg.optim.epochs}")
            t0 = time.perf_counter()
            lam = 0.0
            for x, y in self.data.train.iterate(self.step):
                x = self.data.prepare(x, self.device)
                y = y.to(self.device, non_blocking=True)
                loss, ce, reg, lam, out = self._train_step(x, y, epoch + self.step / self.steps_per_epoch)
                bad = not bool(torch.isfinite(loss))
                save_now = cfg.run.checkpoint_every and (self.global_step + 1) % cfg.run.checkpoint_every == 0
                save_now = save_now or time.monotonic() - last_save > cfg.run.checkpoint_minutes * 60
                if self.dist.enabled:  # every process must take the same branch
                    flags = self.dist.all_reduce(
                        torch.tensor([float(bad), float(save_now and self.dist.is_main)]), "max"
                    )
                    bad, save_now = bool(flags[0]), bool(flags[1])
                if bad:
                    raise NonFiniteError(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {self.step + 1} (global "
                        f"step {self.global_step + 1}){self._kept('; ')}. Start a new run with a lower "
                        f"optim.lr (now {self.scheduler.get_last_lr()[0]:.3g}) or with optim.grad_clip set"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.optimizer)
                else:
                    loss.backward()
                if cfg.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.scheduler.step()
                b = len(y)
                self.partial += torch.tensor(
                    [float(ce) * b, float(reg) * b, float((out.argmax(1) == y).sum()), b, 0.0],
                    dtype=torch.float64,
                )
                self.step += 1
                self.global_step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ce=f"{float(ce):.3f}", rmp=f"{float(reg):.3f}", refresh=False)
                if save_now and self.step < self.steps_per_epoch:
                    self.partial[4] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.elapsed = elapsed0 + time.perf_counter() - t_segment
                    self.save_checkpoint()
                    last_save = time.monotonic()
            if bar is not None:
                bar.close()
            self.partial[4] += time.perf_counter() - t0
            summary = self._end_epoch(epoch, lam)
            self.epoch, self.step = epoch + 1, 0
            self.partial.zero_()
            self.elapsed = elapsed0 + time.perf_counter() - t_segment
            self.save_checkpoint()
            last_save = time.monotonic()
            budget = cfg.run.time_budget_min
            if budget is not None and self.elapsed > budget * 60 and self.epoch < cfg.optim.epochs:
                self.log(f"time budget of {budget:g} min reached after {self.epoch} epochs; stopping")
                break
        return self._finish(summary)

    def run(self, resume: bool = False) -> dict:
        """:meth:`fit`, then release the run directory's lock and the process group, whatever
        happens."""
        try:
            return self.fit(resume=resume)
        finally:
            self.lock.release()
            self.dist.close()

    def _end_epoch(self, epoch: int, lam: float) -> dict:
        cfg = self.cfg
        sums = self.dist.all_reduce(self.partial.clone())
        seen = max(sums[3].item(), 1.0)
        seconds = self.partial[4].item()  # this process's time (all run in step)
        rec = {
            "epoch": epoch + 1,
            "global_step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            "lambda": lam,
            "ce": sums[0].item() / seen,
            "rmp": sums[1].item() / seen,
            "loss": (sums[0].item() + lam * sums[1].item()) / seen,
            "train_accuracy": sums[2].item() / seen,
            "train_images_per_s": seen / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }
        last = epoch + 1 == cfg.optim.epochs
        if (epoch + 1) % cfg.run.eval_every == 0 or last:
            t0 = time.perf_counter()
            ev = evaluate_model(
                self.model,
                self.data.test(),
                v_th=self.v_th,
                device=self.device,
                dist=self.dist,
                data=self.data,
            )
            rec.update(
                test_accuracy=ev["accuracy"],
                quantization_error=ev["quantization_error"],
                quantization_mse=ev["quantization_mse"],
                per_layer=ev["per_layer"],
                eval_seconds=time.perf_counter() - t0,
            )
            if ev["accuracy"] > self.best_accuracy:
                self._check_finite()
                self.best_accuracy = ev["accuracy"]
                if self.dist.is_main:
                    save_model(
                        self.run_dir / "best.safetensors",
                        self.model,
                        model_name=cfg.model.name,
                        model_kwargs=self.model_kwargs,
                        epoch=epoch + 1,
                        test_accuracy=ev["accuracy"],
                        quantization_error=ev["quantization_error"],
                        **self._info(),
                    )
        self._write_metrics(rec)
        self.history.append(rec)
        test = f"  test {rec['test_accuracy']:.4f}" if "test_accuracy" in rec else ""
        if rec.get("quantization_error") is not None:
            test += f"  q-err {rec['quantization_error']:.4f}"
        loss = (
            f"CE {rec['ce']:.4f}  RMP {rec['rmp']:.4f}  λ {rec['lambda']:.3f}"
            if self.spiking
            else (f"loss {rec['ce']:.4f}")
        )
        self.log(
            f"epoch {epoch + 1:>3}/{cfg.optim.epochs}  {loss}  train {rec['train_accuracy']:.4f}{test}  "
            f"({rec['epoch_seconds']:.0f} s, {rec['train_images_per_s']:.0f} img/s)"
        )
        return rec

    def _already_finished(self) -> dict:
        """``--resume`` of a run that has done all its epochs: report it, change nothing."""
        self.log(f"{self.run_dir} already finished its {self.cfg.optim.epochs} epochs; nothing to resume")
        path = self.run_dir / "summary.json"
        if path.is_file():
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(path.read_text())
        # killed between the last checkpoint and the summary: write it from the last epoch's record
        # (no collective calls here: every process takes this path, whatever the files say)
        recs = read_metrics(self.run_dir / "metrics.jsonl")
        summary = self._summary(recs[-1] if recs else {})
        if self.dist.is_main:
            write_json(path, summary)
        return summary

    def _summary(self, last: dict) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "epochs_done": self.epoch,
            "best_test_accuracy": self.best_accuracy,
            "final": {k: v for k, v in last.items() if k != "per_layer"},
            "per_layer_quantization_error": last.get("per_layer"),
            "seconds": self.elapsed,
            "processes": self.dist.world_size,
        }

    def _finish(self, last: dict) -> dict:
        summary = self._summary(last)
        if self.dist.enabled:  # all processes must end with identical weights
            flat = torch.cat([p.detach().flatten().double().cpu() for p in self.model.parameters()])
            checks = torch.zeros(self.dist.world_size, dtype=torch.float64)
            checks[self.dist.rank] = flat.sum() + (flat * torch.arange(len(flat)) % 7).sum()
            checks = self.dist.all_reduce(checks)
            summary["ranks_in_sync"] = bool(
                torch.allclose(checks, checks[0].expand_as(checks), rtol=0, atol=0)
            )
        if self.dist.is_main:
            write_json(self.run_dir / "summary.json", summary)
        if self._tb is not None:
            self._tb.close()
        where = "" if self.temporary else f"; run directory {self.run_dir}"
        self.log(f"done: best test accuracy {self.best_accuracy:.4f}{where}")
        return summary


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The configuration of the run in ``run_dir``, checked to be resumable, with the overrides
    a resumed run may change (where and how it runs, not what it computes)."""
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); give the run's directory")
    if not (run_dir / "last.safetensors").is_file():
        raise CheckpointError(
            f"{run_dir} has no checkpoint (last.safetensors) to resume from; start it again"
        )
    bad = [o for o in (overrides or []) if o.split("=", 1)[0] not in _RESUMABLE_OVERRIDES]
    if bad:
        raise ConfigError(
            f"cannot change {', '.join(bad)} when resuming (the run must continue as it began); "
            f"allowed: {', '.join(_RESUMABLE_OVERRIDES)}"
        )
    return load_config(run_dir / "config.yaml", overrides)


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
