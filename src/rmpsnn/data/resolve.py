"""Resolve a data-set specification (as given on the command line) to image arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from .cifar import load_cifar10, load_cifar100
from .config import register_dataset
from .images import ImageArrays, has_split, load_image_folder
from .shared import shared_cifar10

__all__ = ["channel_stats", "load_digits", "load_static", "synthetic_images"]


def load_static(spec: str | None, split: str) -> ImageArrays:
    """``spec``: ``None``/``"shared"`` (the shared CIFAR-10 JPEG zip), a directory holding
    ``cifar-10-batches-py/`` or ``cifar-100-python/``, or an image folder / zip of
    ``<split>/<class>/*``.  ``split`` is ``"train"`` or ``"test"`` (``"val"`` is tried for
    image folders without a ``test`` split)."""
    if spec in (None, "", "shared"):
        return shared_cifar10(split)
    if spec == "digits":
        return load_digits(split)
    p = Path(spec)
    if (p / "cifar-10-batches-py").is_dir() or p.name == "cifar-10-batches-py":
        return load_cifar10(p.parent if p.name == "cifar-10-batches-py" else p, split)
    if (p / "cifar-100-python").is_dir() or p.name == "cifar-100-python":
        return load_cifar100(p.parent if p.name == "cifar-100-python" else p, split)
    if not p.exists():
        raise DataError(
            f"data {spec!r} not found: give 'shared' (../shared/data/cifar10-jpeg.zip), a folder holding "
            f"cifar-10-batches-py/ or cifar-100-python/, or an image folder/zip with train/ and test/"
        )
    if split == "test" and not has_split(p, "test") and has_split(p, "val"):
        split = "val"  # ImageNet-style folders; other errors (a corrupt image) are reported as they are
    return load_image_folder(p, split)


def channel_stats(data: ImageArrays, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (up to ``max_images``) images scaled to [0, 1]."""
    idx = np.random.default_rng(0).permutation(len(data))[:max_images]  # files are grouped by class
    x = data.images[np.sort(idx)].astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def synthetic_images(
    n: int, *, num_classes: int = 4, size: int = 16, seed: int = 0, split: str = "train"
) -> ImageArrays:
    """A small learnable image set for smoke tests and distributed checks: class ``c`` is noise
    with a brighter square in a class-specific position.  Deterministic in ``(seed, split)``."""
    if num_classes < 2 or size < 8:
        raise InputError(f"synthetic_images needs num_classes >= 2 and size >= 8, got {num_classes}, {size}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    labels = np.arange(n) % num_classes
    images = rng.normal(90, 30, (n, 3, size, size))
    side = size // 2
    for c in range(num_classes):
        y0, x0 = divmod(c % 4, 2)
        rows = labels == c
        patch = images[rows, :, y0 * side : (y0 + 1) * side, x0 * side : (x0 + 1) * side]
        images[rows, :, y0 * side : (y0 + 1) * side, x0 * side : (x0 + 1) * side] = patch + 60 + 20 * (c // 4)
    classes = [f"class{c}" for c in range(num_classes)]
    return ImageArrays(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64), classes)


def load_digits(split: str = "train", test_fraction: float = 0.2) -> ImageArrays:
    """scikit-learn's bundled handwritten digits (1797 grey 8x8 images, 10 classes; a real data
    set that needs no download), split per class: the last ``test_fraction`` of each class is
    ``"test"``.  Pixel values 0..16 are scaled to 0..255."""
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:
        raise DataError("the digits data set comes with scikit-learn: pip install scikit-learn") from e
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    d = _sk_digits()
    images = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)[:, None]
    keep = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        cut = round(len(idx) * (1 - test_fraction))
        keep.append(idx[:cut] if split == "train" else idx[cut:])
    idx = np.sort(np.concatenate(keep))
    return ImageArrays(
        images[idx], d.target[idx].astype(np.int64), [str(c) for c in range(10)], name="digits"
    )


# ----------------------------------------------------------------------------- registered sets
@register_dataset("cifar10", images=True)
def _cifar10(cfg, split: str, seed: int) -> ImageArrays:
    """CIFAR-10 (root: 'shared' for ../shared/data's JPEGs, or a folder with cifar-10-batches-py/)"""
    if cfg.root in ("shared", ""):
        return load_static("shared", split)
    return load_cifar10(cfg.root, split, download=cfg.download)


@register_dataset("cifar100", images=True)
def _cifar100(cfg, split: str, seed: int) -> ImageArrays:
    """CIFAR-100 (root: a folder with cifar-100-python/; data.download fetches it)"""
    return load_cifar100(cfg.root, split, download=cfg.download)


@register_dataset("images", images=True)
def _image_folder(cfg, split: str, seed: int) -> ImageArrays:
    """an image folder or zip with train/<class>/* and test/<class>/* (root)"""
    return load_static(cfg.root, split)


@register_dataset("digits", images=True)
def _digits(cfg, split: str, seed: int) -> ImageArrays:
    """scikit-learn's bundled 8x8 handwritten digits (offline)"""
    return load_static("digits", split)


@register_dataset("synthetic", images=True)
def _synthetic(cfg, split: str, seed: int) -> ImageArrays:
    """generated images of a learnable toy task, sized by train_limit/test_limit"""
    n = (cfg.train_limit or 512) if split == "train" else (cfg.test_limit or 128)
    return synthetic_images(n, seed=seed, split=split)
