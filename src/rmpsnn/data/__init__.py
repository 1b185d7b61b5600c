"""Data sets and tensor transforms.

Static images (uint8 ``[N, C, H, W]`` in memory, batches ``[B, C, H, W]``):
  :func:`load_cifar10`, :func:`load_cifar100` (python-pickle layout, optional download),
  :func:`load_image_folder` (a directory or zip of ``split/<class>/*.jpg``, decoded in parallel
  and cached), :func:`imagenet` / :class:`ImageFolderDataset` (lazy decoding), :func:`shared_cifar10`
  (the JPEG copy of CIFAR-10 in ``../shared/data`` where present);
  :class:`ArrayLoader` batches them with batched, seeded augmentation (:mod:`.transforms`).

Events (frames ``[T, 2, H, W]``, batches ``[T, B, 2, H, W]`` via :func:`collate_time_major`):
  :class:`CIFAR10DVS` (original AEDAT recordings), :func:`read_aedat`, :func:`events_to_frames`,
  :func:`emulate_events` / :class:`EmulatedEvents` (DVS-like events from any image data set).
"""

from pathlib import Path

from . import transforms
from ._io import DataError, cache_dir, download_url
from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, load_cifar10, load_cifar100
from .events import (
    CIFAR10DVS,
    CIFAR10DVS_CLASSES,
    EmulatedEvents,
    augment_event_frames,
    emulate_events,
    events_to_frames,
    read_aedat,
    write_aedat,
)
from .images import ImageArrays, ImageFolderDataset, imagenet, list_image_folder, load_image_folder
from .loader import ArrayLoader, DatasetLoader, collate_time_major


def shared_cifar10_zip(start: str | Path | None = None) -> Path | None:
    """The CIFAR-10 JPEG zip in ``../shared/data/`` beside the project (or ``$RMPSNN_SHARED_DATA``),
    searched from ``start`` (default: the current directory) upwards and from the installed source
    tree upwards; ``None`` when absent."""
    import os

    env = os.environ.get("RMPSNN_SHARED_DATA")
    if env:
        p = Path(env) / "cifar10-jpeg.zip"
        return p if p.is_file() else None
    # from the working directory (or ``start``) upwards, then from this source tree (a checkout)
    for origin in (Path(start or Path.cwd()).resolve(), Path(__file__).resolve()):
        for d in (origin, *origin.parents):
            for p in (
                d / "shared" / "data" / "cifar10-jpeg.zip",
                d.parent / "shared" / "data" / "cifar10-jpeg.zip",
            ):
                if p.is_file():
                    return p
    return None


def shared_cifar10(split: str = "train", **kwargs) -> ImageArrays:
    """CIFAR-10 from the shared JPEG zip (decoded once, then cached); raises :class:`DataError`
    when the zip is not there."""
    path = shared_cifar10_zip()
    if path is None:
        searched = Path.cwd().resolve()
        raise DataError(
            f"cifar10-jpeg.zip not found in shared/data or ../shared/data above {searched} or the rmpsnn "
            f"source tree (set $RMPSNN_SHARED_DATA to its folder); or use a CIFAR-10 download instead: "
            f"data.root=DIR data.download=true (rmpsnn train), --data DIR (train-ann, convert)"
        )
    return load_image_folder(path, split, **kwargs)


__all__ = [
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "ArrayLoader",
    "DataError",
    "DatasetLoader",
    "EmulatedEvents",
    "ImageArrays",
    "ImageFolderDataset",
    "augment_event_frames",
    "cache_dir",
    "collate_time_major",
    "download_url",
    "emulate_events",
    "events_to_frames",
    "imagenet",
    "list_image_folder",
    "load_cifar10",
    "load_cifar100",
    "load_image_folder",
    "read_aedat",
    "shared_cifar10",
    "shared_cifar10_zip",
    "transforms",
    "write_aedat",
]
