"""Shared file plumbing for the data sets: cache directory, checksums, atomic writes, downloads."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write, make_dirs

__all__ = [
    "atomic_save_npz",
    "cache_dir",
    "download_url",
    "extract_archive",
    "file_checksum",
]


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where decoded arrays and integrated frames are cached.

    ``override`` > ``$RMPSNN_CACHE`` > ``$XDG_CACHE_HOME/rmpsnn`` > ``~/.cache/rmpsnn``.
    """
    if override is not None:
        root = Path(override)
    elif os.environ.get("RMPSNN_CACHE"):
        root = Path(os.environ["RMPSNN_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rmpsnn"
    return make_dirs(root)


def file_checksum(path: str | os.PathLike, algo: str = "sha256", chunk: int = 1 << 22) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache entry with :func:`atomic_write` (``np.savez`` into an open file, so no
    ``.npz`` suffix is appended to the temporary name)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def download_url(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 20.0,
    what: str = "file",
    manual_hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` (atomically), verifying the checksum.

    Without network access this fails fast with a :class:`DataError` that says where to put the
    file by hand (``manual_hint``).
    """
    dest = Path(dest)
    if dest.exists() and _checksum_ok(dest, md5, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"could not download {what} from {url} ({type(e).__name__}: {e}). This machine may have "
            f"no internet access. {manual_hint}".strip()
        ) from e
    if not _checksum_ok(tmp, md5, sha256):
        tmp.unlink(missing_ok=True)
        raise DataError(f"downloaded {what} from {url} has the wrong checksum (corrupt or changed upstream)")
    os.replace(tmp, dest)
    return dest


def _checksum_ok(path: Path, md5: str | None, sha256: str | None) -> bool:
    if md5 and file_checksum(path, "md5") != md5:
        return False
    return not (sha256 and file_checksum(path, "sha256") != sha256)


def extract_archive(archive: Path, into: Path) -> None:
    """Extract a .tar(.gz) or .zip archive, refusing paths that escape ``into``."""
    into = Path(into).resolve()
    try:
        if str(archive).endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if not (into / name).resolve().is_relative_to(into):
                        raise DataError(f"{archive}: member {name!r} would be extracted outside {into}")
                z.extractall(into)
        else:
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    if not (into / m.name).resolve().is_relative_to(into):
                        raise DataError(f"{archive}: member {m.name!r} would be extracted outside {into}")
                if hasattr(tarfile, "data_filter"):
                    t.extractall(into, filter="data")
                else:  # pragma: no cover - Python < 3.10.12
                    t.extractall(into)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(
            f"{archive}: cannot extract ({type(e).__name__}: {e}); the file may be truncated"
        ) from e
