"""Data-set registry: every data set registers one builder, and :func:`build_data` turns a typed
:class:`DataConfig` into one :class:`DataBundle` for every consumer -- direct and ANN training,
``evaluate``, ``export``, the report and the quickstart.

A set of static images is one function returning a split as :class:`ImageArrays`; loaders,
augmentation, normalisation with the training split's statistics and sharding come from here::

    @register_dataset("my-set", images=True)
    def my_set(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
        return load_image_folder(cfg.root, split)

Other data (event streams, lazily decoded folders) register ``fn(cfg, ctx) -> DataBundle``,
usually ending in :func:`dataset_bundle`.  ``rmpsnn train data.dataset=my-set`` then works, as
does every other command that reads a data configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError
from . import transforms as T
from .cifar import load_cifar10, load_cifar100
from .events import CIFAR10DVS, EmulatedEvents
from .images import ImageArrays, imagenet, require_classes, require_same_image_size
from .loader import ArrayLoader, DatasetLoader, collate_time_major
from .resolve import channel_stats, load_static, synthetic_images

__all__ = [
    "DataBundle",
    "DataConfig",
    "LoaderContext",
    "available_datasets",
    "build_data",
    "dataset_bundle",
    "image_arrays",
    "image_bundle",
    "register_dataset",
]


@dataclass
class DataConfig:
    """The ``data:`` section of a configuration: which data set and how to load it."""

    dataset: str = "cifar10"
    root: str = "shared"
    augment: str = field(default="crop_flip", metadata={"choices": ("crop_flip", "autoaugment", "none")})
    cutout: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    num_workers: int = 0
    event_size: int = 48
    download: bool = False

    @classmethod
    def from_spec(cls, spec: str | None, **kwargs) -> DataConfig:
        """The configuration of a data *spec* as the commands take it: ``shared`` (the CIFAR-10
        JPEGs in ../shared/data), ``digits``, a directory holding ``cifar-10-batches-py/`` or
        ``cifar-100-python/``, or an image folder / zip with ``train/`` and ``test/``."""
        spec = "shared" if spec in (None, "") else str(spec)
        if spec in ("shared", "digits", "synthetic"):
            return cls(dataset="cifar10" if spec == "shared" else spec, root="shared", **kwargs)
        p = Path(spec)
        for dataset, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
            if (p / folder).is_dir() or p.name == folder:
                return cls(dataset=dataset, root=str(p.parent if p.name == folder else p), **kwargs)
        return cls(dataset="images", root=spec, **kwargs)

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first bad key."""
        if self.dataset not in _DATASETS:
            raise ConfigError(
                f"data.dataset = {self.dataset!r} is not a registered data set; allowed values: "
                f"{', '.join(available_datasets())}"
            )
        for key, lo in (("cutout", 0), ("num_workers", 0), ("event_size", 8)):
            if getattr(self, key) < lo:
                raise ConfigError(f"data.{key} must be >= {lo}, got {getattr(self, key)}")
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"data.{key} must be >= 1, or null for the whole split; got {value}")


@dataclass(frozen=True)
class LoaderContext:
    """How the loaders are cut: the per-process batch, the seed, this process's shard, the
    device the batches go to, and the time steps of event frames."""

    batch_size: int = 64
    seed: int = 0
    timesteps: int = 1
    device: torch.device | str = "cpu"
    rank: int = 0
    world_size: int = 1

    @property
    def shard(self) -> dict:
        return {"rank": self.rank, "world_size": self.world_size}


@dataclass
class DataBundle:
    """Everything a consumer needs from a data set.

    ``train`` is the (augmented, shuffled, sharded) training loader; ``test()`` returns a fresh
    loader over this process's shard of the test split; ``norm`` is the input normalisation
    ``(mean, std)`` (``None`` for event frames); ``input_shape`` is ``(C, H, W)`` of one image or
    frame; ``time_major`` batches are ``[T, B, C, H, W]``.  ``train_images``/``test_images`` are
    the splits as arrays for static image sets (conversion calibrates and evaluates on them)."""

    train: Iterable
    test: Callable[[], Iterable]
    num_classes: int
    input_shape: tuple[int, int, int]
    norm: tuple[list[float], list[float]] | None
    info: dict
    time_major: bool = False
    train_images: ImageArrays | None = None
    test_images: ImageArrays | None = None
    normalize: Callable | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.normalize = T.Normalize(*self.norm) if self.norm is not None else None
        self.info = {**self.info, "input_shape": list(self.input_shape), "time_major": self.time_major}

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def image_size(self) -> int:
        return self.input_shape[-1]

    def prepare(self, x: torch.Tensor, device) -> torch.Tensor:
        """Move a batch to ``device``; decode uint8 images (lazily decoded sets) and normalise them."""
        x = x.to(device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = T.to_float(x)
            if self.normalize is not None:
                x = self.normalize(x)
        return x


@dataclass(frozen=True)
class _Entry:
    build: Callable[[DataConfig, LoaderContext], DataBundle]
    arrays: Callable[[DataConfig, str, int], ImageArrays] | None


_DATASETS: dict[str, _Entry] = {}


def register_dataset(name: str, *, images: bool = False):
    """Decorator: register a data set under ``name``.

    With ``images=True`` the function is ``fn(cfg, split, seed) -> ImageArrays`` (``split`` is
    ``"train"`` or ``"test"``) and :func:`image_bundle` builds the loaders; otherwise it is
    ``fn(cfg, ctx) -> DataBundle``."""

    def deco(fn):
        if name in _DATASETS:
            raise ConfigError(f"data set {name!r} is registered twice")
        if images:
            _DATASETS[name] = _Entry(lambda cfg, ctx: image_bundle(cfg, ctx, fn), fn)
        else:
            _DATASETS[name] = _Entry(fn, None)
        return fn

    return deco


def available_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_data(cfg: DataConfig, ctx: LoaderContext | None = None) -> DataBundle:
    """The :class:`DataBundle` of ``cfg`` cut by ``ctx`` (the one loader builder)."""
    cfg.check()
    return _DATASETS[cfg.dataset].build(cfg, ctx or LoaderContext())


def image_arrays(cfg: DataConfig, split: str, seed: int = 0) -> ImageArrays:
    """One split of a static image set as arrays (all of it: no limit is applied)."""
    cfg.check()
    entry = _DATASETS[cfg.dataset]
    if entry.arrays is None:
        images = [n for n, e in _DATASETS.items() if e.arrays is not None]
        raise ConfigError(
            f"data.dataset = {cfg.dataset!r} is not a set of static images; use one of {', '.join(images)}"
        )
    return entry.arrays(cfg, split, seed)


def _limited(data: ImageArrays, limit: int | None, seed: int) -> ImageArrays:
    """A class-balanced subset of ``limit`` images; a limit the set does not exceed keeps it
    whole (e.g. the synthetic set, generated at its limit)."""
    return data if limit is None or len(data) <= limit else data.balanced(limit, seed)


def image_bundle(cfg: DataConfig, ctx: LoaderContext, arrays: Callable) -> DataBundle:
    """Loaders over in-memory images: class-balanced ``train_limit``/``test_limit`` subsets,
    normalisation with the training subset's channel statistics, random crop (padding size/8)
    and flip, optional Cutout and AutoAugment."""
    train = _limited(arrays(cfg, "train", ctx.seed), cfg.train_limit, ctx.seed)
    test = _limited(arrays(cfg, "test", ctx.seed), cfg.test_limit, ctx.seed)
    require_classes(train)
    require_same_image_size(train, test)
    mean, std = channel_stats(train)
    size = train.images.shape[-1]
    aug = []
    if cfg.augment != "none":
        aug += [T.RandomCrop(size, max(1, size // 8)), T.RandomHorizontalFlip()]
    aug.append(T.Normalize(mean, std))
    if cfg.cutout:
        aug.append(T.Cutout(cfg.cutout))
    loader = ArrayLoader(
        train,
        ctx.batch_size,
        shuffle=True,
        seed=ctx.seed,
        sample_transform=T.AutoAugment("cifar10") if cfg.augment == "autoaugment" else None,
        batch_transform=T.Compose(aug),
        num_workers=cfg.num_workers,
        drop_last=True,
        device=ctx.device,
        **ctx.shard,
    )
    test_shard = test.subset(range(ctx.rank, len(test), ctx.world_size))
    norm = T.Normalize(mean, std)

    def test_batches():
        # 100 images per batch: a forward holds batch x T copies of each layer (peak ~0.8 GB here)
        return ArrayLoader(test_shard, 100, batch_transform=norm, device=ctx.device)

    return DataBundle(
        loader,
        test_batches,
        train.num_classes,
        tuple(train.images.shape[1:]),
        (mean, std),
        {"train_images": len(train), "test_images": len(test)},
        train_images=train,
        test_images=test,
    )


def dataset_bundle(cfg, ctx, train, test, *, num_classes, input_shape, norm=None) -> DataBundle:
    """Loaders over ``torch.utils.data.Dataset`` splits; frames with 2 channels (events) are
    collated time-major."""
    time_major = input_shape[0] == 2
    collate = collate_time_major if time_major else None
    w = cfg.num_workers
    loader = DatasetLoader(
        train,
        ctx.batch_size,
        shuffle=True,
        seed=ctx.seed,
        num_workers=w,
        drop_last=True,
        collate_fn=collate,
        **ctx.shard,
    )
    test_shard = torch.utils.data.Subset(test, range(ctx.rank, len(test), ctx.world_size))

    def test_batches():
        return DatasetLoader(test_shard, 64, num_workers=w, collate_fn=collate)

    info = {"train_images": len(train), "test_images": len(test)}
    return DataBundle(
        loader, test_batches, num_classes, tuple(input_shape), norm, info, time_major=time_major
    )


# ----------------------------------------------------------------------------- built-in sets
@register_dataset("cifar10", images=True)
def _cifar10(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
    if cfg.root in ("shared", ""):
        return load_static("shared", split)
    return load_cifar10(cfg.root, split, download=cfg.download)


@register_dataset("cifar100", images=True)
def _cifar100(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
    return load_cifar100(cfg.root, split, download=cfg.download)


@register_dataset("images", images=True)
def _image_folder(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
    return load_static(cfg.root, split)


@register_dataset("digits", images=True)
def _digits(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
    return load_static("digits", split)


@register_dataset("synthetic", images=True)
def _synthetic(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
    n = (cfg.train_limit or 512) if split == "train" else (cfg.test_limit or 128)
    return synthetic_images(n, seed=seed, split=split)


@register_dataset("cifar10-dvs")
def _cifar10_dvs(cfg: DataConfig, ctx: LoaderContext) -> DataBundle:
    kw = {"timesteps": ctx.timesteps, "size": cfg.event_size, "seed": ctx.seed}
    train = CIFAR10DVS(cfg.root, "train", download=cfg.download, **kw)
    test = CIFAR10DVS(cfg.root, "test", **kw)
    return dataset_bundle(
        cfg, ctx, train, test, num_classes=len(train.classes), input_shape=(2, cfg.event_size, cfg.event_size)
    )


@register_dataset("emulated-dvs")
def _emulated_dvs(cfg: DataConfig, ctx: LoaderContext) -> DataBundle:
    """DVS-like events emulated from the static image set at ``root`` (an offline stand-in for
    CIFAR10-DVS)."""
    base = dataclasses.replace(cfg, dataset="images")
    kw = {"timesteps": ctx.timesteps, "size": cfg.event_size, "seed": ctx.seed}
    base_train = _limited(image_arrays(base, "train", ctx.seed), cfg.train_limit, ctx.seed)
    base_test = _limited(image_arrays(base, "test", ctx.seed), cfg.test_limit, ctx.seed)
    train = EmulatedEvents(base_train, augment=True, **kw)
    test = EmulatedEvents(base_test, **kw)
    return dataset_bundle(
        cfg,
        ctx,
        train,
        test,
        num_classes=base_train.num_classes,
        input_shape=(2, cfg.event_size, cfg.event_size),
    )


@register_dataset("imagenet")
def _imagenet(cfg: DataConfig, ctx: LoaderContext) -> DataBundle:
    autoaugment = cfg.augment == "autoaugment"
    train = imagenet(cfg.root, "train", T.ImageNetTrain(224, autoaugment=autoaugment), ctx.seed)
    test = imagenet(cfg.root, "val", T.ImageNetEval(224))
    norm = (list(T.IMAGENET_MEAN), list(T.IMAGENET_STD))
    return dataset_bundle(
        cfg, ctx, train, test, num_classes=len(train.classes), input_shape=(3, 224, 224), norm=norm
    )
