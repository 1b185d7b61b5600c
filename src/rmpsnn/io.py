"""The one way rmpsnn writes a file: atomically, and with one-line errors.

Every file (checkpoints, NIR graphs, JSON results, reports, data caches) is written to a
temporary file in the destination's folder, flushed to disk (``fsync``) and renamed over the
destination.  A write that fails -- a full disk, a read-only folder, a killed process -- leaves
the previous file exactly as it was, and at worst a hidden temporary file that the next write of
the same destination removes.

This module sits below everything else in the package: it imports neither torch nor the models
nor the data sets, so any layer may use it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from .errors import InputError, WriteError

__all__ = [
    "ENVIRONMENT_ERRNOS",
    "atomic_write",
    "check_output_path",
    "make_dirs",
    "write_bytes",
    "write_json",
    "write_text",
]

# what to do about the usual reasons a write fails
_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "permission denied; write somewhere you may write to",
    errno.EPERM: "permission denied; write somewhere you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder; give a file name",
}
# safetensors (Rust) and HDF5 (h5py) report I/O errors as text: "os error 28", "errno = 28"
_OS_ERROR_IN_TEXT = re.compile(r"(?:os error|errno =) (\d+)")


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError | None:
    """The :class:`WriteError` for ``exc`` raised while writing ``path``, or None when ``exc`` is
    not an I/O failure (a bug, which keeps its traceback)."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None:
        found = _OS_ERROR_IN_TEXT.search(str(exc))
        if found is None:
            detail = " ".join(str(exc).split())
            return WriteError(f"cannot write {path}: {detail}") if isinstance(exc, OSError) else None
        code = int(found.group(1))
    hint = _HINTS.get(code)
    err = WriteError(
        f"cannot write {path}: {os.strerror(code)} [Errno {code}]" + (f" -- {hint}" if hint else "")
    )
    err.errno, err.filename = code, str(path)
    return err


def make_dirs(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``, failing with a one-line :class:`WriteError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(folder, e) from e
    return folder


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of earlier writes of ``path`` whose process is gone (killed
    mid-write); a live writer's file (same host, process running) is left alone."""
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 2 :].split(".")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid):
            continue
        tmp.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, durable: bool = True) -> Path:
    """Create or replace ``path`` by calling ``write(tmp)`` on a temporary file in the same folder,
    fsyncing it (``durable``) and renaming it into place.  If anything fails the previous file is
    untouched and the temporary file removed; an I/O failure (full disk, read-only folder, no
    permission) raises :class:`WriteError` (an ``OSError`` and an ``RmpsnnError``) naming ``path``
    and the cause in one line."""
    path = Path(path)
    make_dirs(path.parent)
    _remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            write(str(tmp))
            if durable:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except WriteError:
        raise
    except Exception as e:
        err = write_error(path, e)
        if err is None:
            raise
        raise err from e
    if durable:
        _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory); best effort elsewhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()

    return atomic_write(path, write, durable=durable)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 1) -> Path:
    """Atomically write ``obj`` as JSON to ``path``."""
    return write_text(path, json.dumps(obj, indent=indent))


# disk full, quota, read-only file system, permission denied: the environment, not a bug
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

# files a result must never replace: a model's weights (what the user trained)
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".nir")


def check_output_path(
    path: str | os.PathLike, *, writes: str, suffix: str | None = None, reads=(), key: str = "out"
) -> Path:
    """Refuse an output ``path`` that would destroy what the user has: one of the files the
    command ``reads``, or a checkpoint (``.safetensors``, ``.pt``, ...) where ``writes`` (e.g.
    "JSON") goes; ``suffix``: the one ending ``path`` may have (a folder otherwise).  Returns ``path``."""
    out = Path(path)
    for source in reads:
        if source is not None and out.exists() and Path(source).exists() and out.samefile(source):
            raise InputError(
                f"{key}={str(path)!r} is the file this command reads; writing {writes} there would "
                f"replace it: give another path",
                key=key,
            )
    if out.suffix.lower() in _CHECKPOINT_SUFFIXES and out.suffix.lower() != (suffix or ""):
        raise InputError(
            f"{key}={str(path)!r} names a {out.suffix} file, and this command writes {writes}: give a "
            + (f"path ending in {suffix}" if suffix else "folder"),
            key=key,
        )
    if suffix is None and out.is_file():
        raise InputError(f"{key}={str(path)!r} is a file; this command writes {writes} in a folder", key=key)
    return out
