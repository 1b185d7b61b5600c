"""Data sets and tensor transforms.

Registry (:mod:`.registry`): data sets register themselves (:func:`register_dataset`) and
:func:`build_data` turns a :class:`DataConfig` into one :class:`DataBundle` (loaders,
classes, input shape, normalisation) for every command.

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
from .registry import (
    DataBundle,
    DataConfig,
    LoaderContext,
    available_datasets,
    build_data,
    dataset_bundle,
    image_arrays,
    image_bundle,
    register_dataset,
)
from .shared import shared_cifar10, shared_cifar10_zip

__all__ = [
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "ArrayLoader",
    "DataBundle",
    "DataConfig",
    "DataError",
    "DatasetLoader",
    "EmulatedEvents",
    "ImageArrays",
    "ImageFolderDataset",
    "LoaderContext",
    "augment_event_frames",
    "available_datasets",
    "build_data",
    "cache_dir",
    "collate_time_major",
    "dataset_bundle",
    "download_url",
    "emulate_events",
    "events_to_frames",
    "image_arrays",
    "image_bundle",
    "imagenet",
    "list_image_folder",
    "load_cifar10",
    "load_cifar100",
    "load_image_folder",
    "read_aedat",
    "register_dataset",
    "shared_cifar10",
    "shared_cifar10_zip",
    "transforms",
    "write_aedat",
]
