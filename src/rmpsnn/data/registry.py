"""Data-set registry: every data set registers one builder, and :func:`build_data` turns a typed
:class:`DataConfig` into one :class:`DataBundle` for every consumer -- direct and ANN training,
``evaluate``, ``export``, the report and the quickstart.

A set of static images is one function returning a split as :class:`ImageArrays`; loaders,
augmentation, normalisation with the training split's statistics and sharding come from here::

    @register_dataset("my-set", images=True)
    def my_set(cfg: DataConfig, split: str, seed: int) -> ImageArrays:
        return load_image_folder(cfg.root, split)

Other data (event streams, lazily decoded folders) register ``fn(cfg, ctx) -> DataBundle``,
usually ending in :func:`dataset_bundle`, and declare their input (``input="events"``).  The
registry itself (:data:`DATASETS`, :func:`register_dataset`) lives in :mod:`.config`; each
built-in set registers beside its loader.  ``rmpsnn train data.dataset=my-set`` then works, as
does every other command that reads a data configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from . import transforms as T
from .config import DATASETS, DataConfig
from .images import ImageArrays, require_classes, require_same_image_size
from .loader import ArrayLoader, DatasetLoader, collate_time_major
from .resolve import channel_stats

__all__ = [
    "DataBundle",
    "LoaderContext",
    "build_data",
    "dataset_bundle",
    "image_arrays",
    "image_bundle",
]


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


def build_data(cfg: DataConfig, ctx: LoaderContext | None = None) -> DataBundle:
    """The :class:`DataBundle` of ``cfg`` cut by ``ctx`` (the one loader builder: training,
    ``evaluate``, ``export``, the report and the quickstart all call it)."""
    cfg.check()
    entry = DATASETS.entry(cfg.dataset)
    ctx = ctx or LoaderContext()
    if entry.meta["arrays"]:
        return image_bundle(cfg, ctx, entry.obj)
    return entry.obj(cfg, ctx)


def image_arrays(cfg: DataConfig, split: str, seed: int = 0) -> ImageArrays:
    """One split of a static image set as arrays (all of it: no limit is applied)."""
    cfg.check()
    entry = DATASETS.entry(cfg.dataset)
    if not entry.meta["arrays"]:
        images = [e.name for e in DATASETS.entries() if e.meta["arrays"]]
        raise ConfigError(
            f"data.dataset = {cfg.dataset!r} is not a set of static images; use one of {', '.join(images)}"
        )
    return entry.obj(cfg, split, seed)


def limited(data: ImageArrays, limit: int | None, seed: int) -> ImageArrays:
    """A class-balanced subset of ``limit`` images; a limit the set does not exceed keeps it
    whole (e.g. the synthetic set, generated at its limit)."""
    return data if limit is None or len(data) <= limit else data.balanced(limit, seed)


def image_bundle(cfg: DataConfig, ctx: LoaderContext, arrays: Callable) -> DataBundle:
    """Loaders over in-memory images: class-balanced ``train_limit``/``test_limit`` subsets,
    normalisation with the training subset's channel statistics, random crop (padding size/8)
    and flip, optional Cutout and AutoAugment."""
    train = limited(arrays(cfg, "train", ctx.seed), cfg.train_limit, ctx.seed)
    test = limited(arrays(cfg, "test", ctx.seed), cfg.test_limit, ctx.seed)
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
    """Loaders over ``torch.utils.data.Dataset`` splits; the frames of a data set registered with
    ``input="events"`` are collated time-major (``[T, B, C, H, W]``)."""
    time_major = cfg.input == "events"
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
