"""Image data sets: in-memory uint8 arrays, image folders (a directory or a zip of one) decoded
once and cached, and lazily decoded folders for ImageNet-sized data.

Layout of an image folder (classes sorted by name give the label order)::

    <source>/train/<class>/*.jpg      <source>/test/<class>/*.jpg     (ImageNet: val/<wnid>/*.JPEG)

``<source>`` is a directory or a ``.zip`` of one; ``../shared/data/cifar10-jpeg.zip`` is such a
zip of CIFAR-10.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, InputError
from ..limits import MAX_IMAGE_PIXELS, gib
from ._io import atomic_save_npz, cache_dir, file_checksum
from .config import register_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageArrays",
    "ImageFolderDataset",
    "has_split",
    "list_image_folder",
    "load_image_folder",
    "require_classes",
    "require_same_image_size",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
_CACHE_VERSION = 1


@dataclass
class ImageArrays:
    """A whole image data set in memory: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise InputError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {self.images.shape}"
            )
        if len(self.images) != len(self.labels):
            raise InputError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            bad = self.labels[(self.labels < 0) | (self.labels >= len(self.classes))][0]
            raise DataError(
                f"{self.name or 'data set'}: label {int(bad)} is outside 0..{len(self.classes) - 1} "
                f"(the {len(self.classes)} classes); the label file is corrupt or belongs to another data set"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, int64 labels) as tensors sharing memory with the arrays."""
        return torch.from_numpy(self.images), torch.from_numpy(self.labels)

    def subset(self, indices) -> ImageArrays:
        idx = np.asarray(indices)
        return ImageArrays(self.images[idx], self.labels[idx], self.classes, self.name, dict(self.meta))

    def balanced(self, total: int | None, seed: int = 0) -> ImageArrays:
        """A class-balanced subset of about ``total`` images (``total // classes`` per class, at
        least one); the whole set when ``total`` is ``None`` or 0."""
        return self.per_class(max(1, total // self.num_classes), seed=seed) if total else self

    def per_class(self, n: int, seed: int = 0, skip: int = 0) -> ImageArrays:
        """A class-balanced subset of (at most) ``n`` images per class, chosen under ``seed``;
        ``skip`` leaves out the first ``skip`` per class of that seeded order, so that
        ``per_class(n, seed, skip=n)`` is disjoint from ``per_class(n, seed)``."""
        rng = np.random.default_rng(seed)
        keep = [
            rng.permutation(np.flatnonzero(self.labels == c))[skip : skip + n]
            for c in range(self.num_classes)
        ]
        return self.subset(np.sort(np.concatenate(keep)))


def require_classes(data: ImageArrays, minimum: int = 2) -> None:
    """Refuse training data in which fewer than ``minimum`` classes occur: a classifier trained on
    one class reaches 100 % while learning nothing."""
    present = np.unique(data.labels)
    if len(present) < minimum:
        names = ", ".join(data.classes[i] for i in present) or "none"
        raise DataError(
            f"{data.name or 'the training data'}: {len(data)} images of {len(present)} class(es) ({names}); "
            f"a classifier needs images of at least {minimum} classes"
        )


def require_same_image_size(train: ImageArrays, test: ImageArrays) -> None:
    """Refuse splits of different image sizes before training (a model built for the training
    images would fail on the test images only after a whole epoch)."""
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{train.name or 'train'} images are {list(train.images.shape[1:])} (C, H, W) but "
            f"{test.name or 'test'} images are {list(test.images.shape[1:])}; give both splits one size"
        )


# an image file (compressed) larger than this is refused before it is read into memory
MAX_IMAGE_FILE_BYTES = 256 << 20


# ----------------------------------------------------------------------------- listing
def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


SPLITS = ("train", "test", "val")


def _zip_classes(names: list[str], split: str | None) -> dict[str, list[str]]:
    prefix = f"{split}/" if split else ""
    by_class: dict[str, list[str]] = {}
    for n in names:
        if n.startswith(prefix) and _is_image(n):
            parts = n[len(prefix) :].split("/")
            if len(parts) == 2 and not parts[0].startswith("."):
                by_class.setdefault(parts[0], []).append(n)
    return by_class


def _dir_classes(base: Path) -> list[str]:
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))


def has_split(source: str | Path, split: str) -> bool:
    """Whether the image folder (directory or zip) ``source`` has a ``split/`` folder."""
    source = Path(source)
    if source.is_dir():
        return (source / split).is_dir()
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            return any(n.startswith(f"{split}/") for n in z.namelist())
    return False


def list_image_folder(source: str | Path, split: str | None) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted) and ``(member, label)`` pairs of ``source[/split]/<class>/<file>``.

    Members are paths relative to ``source`` (zip member names for a zip).  Labels are the
    positions of the class names in one sorted list, so every split of ``source`` (train, test,
    val) must have the same class folders: a :class:`DataError` names the difference otherwise
    (a class missing from one split would silently shift the labels of the classes after it)."""
    source = Path(source)
    prefix = f"{split}/" if split else ""
    if source.is_dir():
        base = source / split if split else source
        if not base.is_dir():
            raise DataError(f"{base} not found: expected {source}/{prefix}<class>/<image files>")
        classes = _dir_classes(base)
        items = [
            (f"{prefix}{c}/{f.name}", i)
            for i, c in enumerate(classes)
            for f in sorted((base / c).iterdir())
            if f.is_file() and _is_image(f.name)
        ]
        others = {
            s: _dir_classes(source / s) for s in SPLITS if split and s != split and (source / s).is_dir()
        }
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            names = z.namelist()
        by_class = _zip_classes(names, split)
        classes = sorted(by_class)
        items = [(n, i) for i, c in enumerate(classes) for n in sorted(by_class[c])]
        others = {s: sorted(_zip_classes(names, s)) for s in SPLITS if split and s != split}
    elif source.exists():
        raise DataError(f"{source} is neither a directory nor a zip file")
    else:
        raise DataError(f"image folder {source} not found")
    if not items:
        raise DataError(
            f"no images found under {source} (split {split!r}): expected {prefix}<class>/<image files>"
        )
    for other, other_classes in others.items():
        if other_classes and other_classes != classes:
            only_here = sorted(set(classes) - set(other_classes))
            only_there = sorted(set(other_classes) - set(classes))
            raise DataError(
                f"{source}: the class folders of {split}/ and {other}/ differ (only in {split}/: "
                f"{', '.join(only_here) or '-'}; only in {other}/: {', '.join(only_there) or '-'}). "
                f"Labels are positions in the sorted class list, so every split needs the same class folders"
            )
    return classes, items


# ----------------------------------------------------------------------------- decoding
def _open_image(data: bytes, name: str, size: tuple[int, int] | None):
    """Decode one image; its pixel count is checked from the header before decoding (PIL's own
    limit is a warning up to 2x its bound and then an error naming no file)."""
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise DataError(
                f"{name}: a {w}x{h} image ({w * h / 1e6:.0f} M pixels, {gib(3.0 * w * h)} decoded) is larger "
                f"than rmpsnn decodes ({MAX_IMAGE_PIXELS / 1e6:.0f} M pixels); resize it beforehand"
            )
        img = img.convert("RGB")
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: {e}; resize it beforehand") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: cannot decode image ({type(e).__name__}: {e}); the file is corrupt") from e
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return img


def _decode_chunk(args) -> np.ndarray:
    source, members, size = args
    out = []
    z = zipfile.ZipFile(source) if not Path(source).is_dir() else None
    try:
        shape = None
        for m in members:
            try:
                stored = z.getinfo(m).file_size if z is not None else (Path(source) / m).stat().st_size
                if stored > MAX_IMAGE_FILE_BYTES:  # a zip's small entry can expand to gigabytes
                    raise DataError(
                        f"{source}: {m} is {gib(stored)} uncompressed, more than an image file may be "
                        f"({gib(MAX_IMAGE_FILE_BYTES)}); remove it or resize it"
                    )
                data = z.read(m) if z is not None else (Path(source) / m).read_bytes()
            except (OSError, zipfile.BadZipFile, KeyError) as e:
                raise DataError(f"{source}: cannot read {m} ({type(e).__name__}: {e})") from e
            arr = np.asarray(_open_image(data, f"{source}:{m}", size), dtype=np.uint8)
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise DataError(
                    f"{source}:{m} is {arr.shape[1]}x{arr.shape[0]} but earlier images are "
                    f"{shape[1]}x{shape[0]}; pass size=(H, W) to resize while decoding"
                )
            out.append(arr.transpose(2, 0, 1))
    finally:
        if z is not None:
            z.close()
    return np.stack(out)


def _source_key(source: Path) -> str:
    if source.is_file():
        return file_checksum(source)
    h = hashlib.sha256()
    for p in sorted(source.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_image_folder(
    source: str | Path,
    split: str | None = "train",
    *,
    size: tuple[int, int] | None = None,
    cache: bool = True,
    cache_root: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> ImageArrays:
    """Decode every image of ``source[/split]`` into a uint8 ``[N, 3, H, W]`` array.

    Decoding runs in ``workers`` processes (default: all cores).  The result is cached as
    ``.npz`` under :func:`cache_dir`, keyed by the source's checksum (sha256 of a zip; names,
    sizes and times of a directory's files), the split and ``size``: the next load reads the
    arrays back in about a second.  All images must share one size unless ``size`` is given.
    """
    source = Path(source)
    key = None
    if cache:
        key = hashlib.sha256(f"{_source_key(source)}|{split}|{size}|v{_CACHE_VERSION}".encode()).hexdigest()[
            :24
        ]
        path = cache_dir(cache_root) / f"imagefolder-{source.stem}-{split or 'all'}-{key}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return ImageArrays(
                        z["images"],
                        z["labels"],
                        [str(c) for c in z["classes"]],
                        name=f"{source.stem}-{split}",
                        meta={"cache": str(path)},
                    )
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, not trusted
    classes, items = list_image_folder(source, split)
    members = [m for m, _ in items]
    labels = np.array([lab for _, lab in items], dtype=np.int64)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    n_chunks = max(1, min(len(members) // 500, workers * 8))
    chunks = [members[i::n_chunks] for i in range(n_chunks)]  # interleaved: balanced classes per chunk
    order = np.concatenate([np.arange(len(members))[i::n_chunks] for i in range(n_chunks)])
    jobs = [(str(source), c, size) for c in chunks]
    if workers == 1 or n_chunks == 1:
        parts = [_decode_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            parts = list(ex.map(_decode_chunk, jobs))
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise DataError(f"{source}: images have different sizes {sorted(shapes)}; pass size=(H, W)")
    images = np.empty((len(members), *parts[0].shape[1:]), dtype=np.uint8)
    images[order] = np.concatenate(parts)
    result = ImageArrays(images, labels, classes, name=f"{source.stem}-{split}")
    if cache:
        atomic_save_npz(path, images=images, labels=labels, classes=np.array(classes))
        result.meta["cache"] = str(path)
    return result


# ----------------------------------------------------------------------------- lazy folders
class ImageFolderDataset(torch.utils.data.Dataset):
    """Lazily decoded image folder (ImageNet-sized data): ``root/split/<class>/<image>``.

    ``transform(pil_image, generator) -> uint8 tensor [C, H, W]`` (e.g.
    :class:`rmpsnn.data.transforms.ImageNetTrain`); ``None`` returns the full image as a tensor.
    Items are ``(image, label)``.  With ``seed`` set, the random transform of item ``i`` in epoch
    ``e`` depends only on ``(seed, e, i)``, whatever the number of loader workers.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        transform: Callable | None = None,
        seed: int | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} not found")
        self.classes, self.items = list_image_folder(self.root, split)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        member, label = self.items[i]
        path = self.root / member
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from e
        img = _open_image(data, str(path), None)
        gen = None
        if self.seed is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFFFFFFFFFF)
        if self.transform is not None:
            out = self.transform(img, generator=gen)
        else:
            out = torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())
        return out, label


def imagenet(
    root: str | Path, split: str = "train", transform: Callable | None = None, seed: int | None = None
) -> ImageFolderDataset:
    """ILSVRC-2012 in the usual folder layout: ``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG``."""
    root = Path(root)
    base = root / split
    if base.is_dir() and not any(p.is_dir() for p in base.iterdir()):
        raise DataError(
            f"{base} holds images but no class folders: move the validation images into val/<wnid>/ "
            f"(e.g. with the widely used valprep.sh) so that labels can be read from the folder names"
        )
    return ImageFolderDataset(root, split, transform, seed)


__all__ += ["imagenet"]


@register_dataset("imagenet")
def _imagenet_set(cfg, ctx):
    """ILSVRC-2012 in folders (root/train/<wnid>/, root/val/<wnid>/), decoded lazily at 224x224"""
    from . import transforms as T
    from .registry import dataset_bundle

    autoaugment = cfg.augment == "autoaugment"
    train = imagenet(cfg.root, "train", T.ImageNetTrain(224, autoaugment=autoaugment), ctx.seed)
    test = imagenet(cfg.root, "val", T.ImageNetEval(224))
    norm = (list(T.IMAGENET_MEAN), list(T.IMAGENET_STD))
    shape = (3, 224, 224)
    return dataset_bundle(cfg, ctx, train, test, num_classes=len(train.classes), input_shape=shape, norm=norm)
