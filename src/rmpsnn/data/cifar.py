"""CIFAR-10 / CIFAR-100 in the standard python-pickle layout.

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

as the official archives (and torchvision) store them.  The pickles are read with a restricted
unpickler that only rebuilds plain containers and numpy arrays, never arbitrary objects.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ._io import download_url, extract_archive
from .images import ImageArrays

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "load_cifar10", "load_cifar100"]

# per-channel statistics of the training sets (RGB, images scaled to [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_SOURCES = {
    "cifar10": (
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and numpy arrays only."""

    _ALLOWED: frozenset = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("copyreg", "_reconstructor"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        }
    )

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


class _Refused(pickle.UnpicklingError):
    pass


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{path}: refusing to load: the pickle references {e}, not plain data "
            f"(CIFAR files hold only arrays, lists and names)"
        ) from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise DataError(
            f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e}); the file is corrupt or "
            f"truncated -- delete it and download/extract the archive again"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR pickle, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: missing 'data' or '{label_key}' entry (is this the right CIFAR variant?)")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(
            f"{path}: 'data' has shape {data.shape}, expected [N, 3072] with N = {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _names(path: Path, key: str) -> list[str]:
    names = _load_pickle(path).get(key)
    if names is None:
        raise DataError(f"{path}: missing '{key}'")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _locate(root: Path, variant: str, download: bool) -> Path:
    folder, url, md5 = _SOURCES[variant]
    root = Path(root)
    base = root / folder
    if base.is_dir():
        return base
    archive = root / url.rsplit("/", 1)[1]
    hint = (
        f"Put the extracted '{folder}/' folder (or '{archive.name}') under {root}, e.g. copied from a "
        f"machine with internet access."
    )
    if not archive.exists():
        if not download:
            raise DataError(
                f"{variant}: {base.resolve()} not found. {hint} Or download it: download=True in Python, "
                f"data.download=true with `rmpsnn train` (data.root=DIR says where it goes)"
            )
        download_url(url, archive, md5=md5, what=f"{variant} archive", manual_hint=hint)
    try:
        extract_archive(archive, root)
    except (DataError, tarfile.TarError) as e:
        raise DataError(f"{variant}: {e}") from e
    if not base.is_dir():
        raise DataError(f"{variant}: {archive} did not contain {folder}/")
    return base


def load_cifar10(root: str | Path, split: str = "train", *, download: bool = False) -> ImageArrays:
    """CIFAR-10 as uint8 arrays ``[N, 3, 32, 32]`` with labels and class names.

    ``download=True`` fetches the official archive (md5-verified) when it is not under ``root``.
    """
    base = _locate(Path(root), "cifar10", download)
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    parts = [_batch(base / f, "labels") for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    classes = _names(base / "batches.meta", "label_names")
    return ImageArrays(images, labels, classes, name=f"cifar10-{split}")


def load_cifar100(
    root: str | Path, split: str = "train", *, download: bool = False, coarse: bool = False
) -> ImageArrays:
    """CIFAR-100 (fine labels, or the 20 coarse super-classes with ``coarse=True``)."""
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    base = _locate(Path(root), "cifar100", download)
    key = "coarse_labels" if coarse else "fine_labels"
    images, labels = _batch(base / split, key)
    classes = _names(base / "meta", "coarse_label_names" if coarse else "fine_label_names")
    return ImageArrays(images, labels, classes, name=f"cifar100-{split}")
