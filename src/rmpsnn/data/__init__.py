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

# Names load on first use (PEP 562): `rmpsnn.data.config` (the data section of a configuration)
# is read by the command line without torch.
_HOME = {
    "ArrayLoader": ".loader",
    "augment_event_frames": ".events",
    "available_datasets": ".config",
    "build_data": ".registry",
    "cache_dir": "._io",
    "CIFAR100_MEAN": ".cifar",
    "CIFAR100_STD": ".cifar",
    "CIFAR10_MEAN": ".cifar",
    "CIFAR10_STD": ".cifar",
    "CIFAR10DVS": ".events",
    "CIFAR10DVS_CLASSES": ".events",
    "collate_time_major": ".loader",
    "DataBundle": ".registry",
    "DataConfig": ".config",
    "DataError": "._io",
    "dataset_bundle": ".registry",
    "dataset_options": ".config",
    "DatasetLoader": ".loader",
    "DATASETS": ".config",
    "download_url": "._io",
    "emulate_events": ".emulated",
    "EmulatedEvents": ".emulated",
    "events_to_frames": ".events",
    "image_arrays": ".registry",
    "image_bundle": ".registry",
    "ImageArrays": ".images",
    "ImageFolderDataset": ".images",
    "imagenet": ".images",
    "list_image_folder": ".images",
    "load_cifar10": ".cifar",
    "load_cifar100": ".cifar",
    "load_image_folder": ".images",
    "LoaderContext": ".registry",
    "read_aedat": ".events",
    "register_dataset": ".config",
    "shared_cifar10": ".shared",
    "shared_cifar10_zip": ".shared",
    "transforms": ".transforms",
    "write_aedat": ".events",
}

__all__ = [
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASETS",
    "ArrayLoader",
    "DataBundle",
    "DataConfig",
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
    "dataset_options",
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


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        module = importlib.import_module(_HOME[name], __name__)
        value = module if _HOME[name] == f".{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
