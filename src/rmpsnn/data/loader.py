"""Fast, reproducible batching for in-memory image arrays and event frames.

On two CPU cores the cheapest pipeline gathers a uint8 batch from memory and augments the whole
batch with tensor ops (:mod:`rmpsnn.data.transforms`); per-image Pillow work (AutoAugment) runs
in DataLoader worker processes.  Every random choice is drawn from a generator seeded by
``(seed, epoch, batch or sample index)``, so a run is reproducible whatever the worker count,
and ``rank``/``world_size`` shard each epoch's permutation for distributed training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..errors import InputError
from .images import ImageArrays
from .transforms import to_float

__all__ = ["ArrayLoader", "DatasetLoader", "collate_time_major", "mix_seed"]


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (deterministic across processes)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class _SampleTransformed(torch.utils.data.Dataset):
    """uint8 image i -> sample_transform(image, generator(seed, epoch, i)) (runs in workers)."""

    def __init__(self, images: torch.Tensor, transform: Callable, seed: int):
        self.images, self.transform, self.seed, self.epoch = images, transform, seed, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, i))
        return self.transform(self.images[i], generator=g)


class _EpochBatches:
    """The batch order of one epoch: a permutation seeded by ``(seed, epoch)`` (or the identity),
    rank ``rank``'s shard of it, cut into batches."""

    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool
    rank: int
    world_size: int
    epoch: int

    def _size(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentations the next iteration uses."""
        self.epoch = int(epoch)

    def _indices(self) -> torch.Tensor:
        n = self._size()
        if self.shuffle:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch)))
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            idx = idx.repeat(2)[: per_rank * self.world_size]  # wrap-pad, like DistributedSampler
            idx = idx[self.rank :: self.world_size]
        return idx

    def _batches(self) -> list[torch.Tensor]:
        batches = list(self._indices().split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        n = len(self._indices()) if self.world_size > 1 else self._size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start: int = 0):
        raise NotImplementedError


def _check_batching(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise InputError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")


class ArrayLoader(_EpochBatches):
    """Batches of ``(images float [B, C, H, W], labels int64 [B])`` from :class:`ImageArrays`.

    Args:
        data: the images (uint8) and labels.
        batch_size: samples per batch.
        shuffle: a new permutation every epoch (see :meth:`set_epoch`).
        seed: seeds the permutation and every augmentation.
        sample_transform: per-image transform on uint8 ``[C, H, W]`` (e.g. ``AutoAugment``), run
            in ``num_workers`` processes.
        batch_transform: batched transform on the float batch in [0, 1] (e.g. ``Compose([RandomCrop
            (32, 4), RandomHorizontalFlip(), Normalize(...), Cutout(16)])``).
        drop_last: drop the last incomplete batch.
        device: where batches are put (batch transforms run there).
        rank, world_size: take shard ``rank`` of every epoch's permutation (distributed training);
            shards are padded by wrapping so every rank sees the same number of batches.
    """

    def __init__(
        self,
        data: ImageArrays,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        sample_transform: Callable | None = None,
        batch_transform: Callable | None = None,
        num_workers: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_batching(batch_size, rank, world_size)
        self.images, self.labels = data.tensors()
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.sample_transform, self.batch_transform = sample_transform, batch_transform
        self.num_workers, self.drop_last = num_workers, drop_last
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._sampled = _SampleTransformed(self.images, sample_transform, seed) if sample_transform else None

    def _size(self) -> int:
        return len(self.images)

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches from batch ``start`` on, exactly as a full pass would give them
        (resuming a run in the middle of an epoch)."""
        batches = self._batches()[start:]
        if self._sampled is not None:
            self._sampled.epoch = self.epoch
            source = torch.utils.data.DataLoader(
                self._sampled,
                batch_sampler=[b.tolist() for b in batches],
                num_workers=self.num_workers,
                persistent_workers=False,
            )
        else:
            source = (self.images[b] for b in batches)
        for k, (b, imgs) in enumerate(zip(batches, source, strict=True), start):
            x = to_float(imgs.to(self.device, non_blocking=True))
            if self.batch_transform is not None:
                g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, k, 1 << 40))
                x = self.batch_transform(x, generator=g)
            yield x, self.labels[b].to(self.device, non_blocking=True)


class DatasetLoader(_EpochBatches):
    """Batches from a map-style dataset (event frames, lazily decoded ImageNet) with the same
    contract as :class:`ArrayLoader`: an epoch's order depends only on ``(seed, epoch)``,
    ``rank``/``world_size`` shard it, :meth:`iterate` can start in the middle of an epoch, and
    the dataset's ``set_epoch`` (if any) is called so that its augmentations are seeded too.
    Workers are started per epoch (``num_workers`` processes)."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        drop_last: bool = False,
        collate_fn: Callable | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_batching(batch_size, rank, world_size)
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.num_workers, self.drop_last, self.collate_fn = num_workers, drop_last, collate_fn
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def _size(self) -> int:
        return len(self.dataset)

    def iterate(self, start: int = 0):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        batches = [b.tolist() for b in self._batches()[start:]]
        if not batches:
            return iter(())
        return iter(
            torch.utils.data.DataLoader(
                self.dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=self.collate_fn
            )
        )


def collate_time_major(batch):
    """Collate ``(frames [T, ...], label)`` samples into ``(frames [T, B, ...], labels [B])``."""
    frames = torch.stack([b[0] for b in batch], dim=1)
    labels = torch.as_tensor([b[1] for b in batch], dtype=torch.long)
    return frames, labels
