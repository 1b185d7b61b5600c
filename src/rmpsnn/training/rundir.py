"""What keeps a run directory consistent: one writer at a time, no stale temporary files, and
metrics that survive a kill in the middle of a line.

Guarantees (see docs/training.md):

- **Lock.** A process that trains into a run directory holds an exclusive ``fcntl`` lock on
  ``RUN_DIR/.lock`` for as long as it runs; a second ``rmpsnn train`` (``--resume``, or
  ``run.overwrite=true``) on the same directory stops at once with one line naming the holder.
  The lock is released by the kernel when the process dies, so a killed run never stays locked.
  (On systems without ``fcntl`` the lock is a no-op.)
- **Temporary files.** Checkpoints are written to a temporary file and renamed; temporary
  files left by a killed write are removed when the next process takes the lock.
- **Resume.** A run continues with the configuration it began with (``config.yaml``); only where and
  how it runs may be changed (:func:`resume_config`).
- **Metrics.** ``metrics.jsonl`` is read line by line; a cut-off *last* line (a kill during the
  write) is dropped, and any other broken line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from ..errors import CheckpointError, ConfigError, InputError, RunLockedError
from .config import TrainConfig, load_config

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunLock", "read_metrics", "remove_stale_temp_files", "resume_config"]

# keys a resumed run may change: where and how it runs, not what it computes
_RESUMABLE_OVERRIDES = (
    "run.device",
    "run.progress",
    "run.tensorboard",
    "run.checkpoint_every",
    "run.checkpoint_minutes",
    "run.time_budget_min",
)


class RunLock:
    """Exclusive lock on a run directory (``with RunLock(run_dir): ...`` or acquire/release)."""

    def __init__(self, run_dir: str | os.PathLike, option: str = "run directory", command: str = "train"):
        self.run_dir = Path(run_dir)
        self.option = option  # what the user set, for the error message (e.g. run.out)
        self.command = command  # the rmpsnn command that resumes the run (train, train-ann)
        self._file = None

    def acquire(self) -> RunLock:
        if self._file is not None:
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise InputError(f"{self.option}={self.run_dir} is a file; give a directory path for the run")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.run_dir / ".lock", "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise RunLockedError(
                    f"{self.run_dir} is in use by {holder}; wait for that run to end (or stop it), "
                    f"then resume with `rmpsnn {self.command} --resume {self.run_dir}`"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the ``*.tmp`` files that killed atomic writes left in ``run_dir`` (call it only while
    holding the run's lock: then no write of this run is in progress)."""
    removed = []
    for p in Path(run_dir).glob("*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl``; a cut-off last line is dropped (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # the process was killed while writing this line; the epoch is redone on resume
            raise CheckpointError(
                f"{path}, line {i + 1}: not a JSON record ({e}); the file was edited or damaged"
            ) from e
    return records


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
