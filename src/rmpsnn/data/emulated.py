"""DVS-like event streams emulated from static images (an offline stand-in for CIFAR10-DVS,
which was recorded by moving CIFAR-10 images on a screen in front of a DVS128 sensor).

:func:`emulate_events` turns one image into AEDAT-like events (log-intensity change detection along
a saccade path, as in ESIM / v2e); :class:`EmulatedEvents` makes frames ``[T, 2, size, size]``
from any image data set through the same pipeline as :class:`~rmpsnn.data.CIFAR10DVS`; the data set
``emulated-dvs`` serves them from the configuration.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .config import dataset_options, register_dataset
from .events import (
    EVENT_DTYPE,
    SENSOR,
    EventOptions,
    augment_event_frames,
    events_to_frames,
    resize_frames,
    resolve_timesteps,
)
from .loader import mix_seed

__all__ = ["EmulatedEvents", "emulate_events"]


def _saccade_path(steps: int, amplitude: float) -> np.ndarray:
    """Closed triangular path (three saccades, as used to record N-MNIST/N-Caltech101 and
    similar to CIFAR10-DVS's repeated closed-loop motion): ``[steps, 2]`` offsets (dy, dx)."""
    corners = np.array([[0.0, 0.0], [1.0, 0.5], [0.0, 1.0], [0.0, 0.0]]) * amplitude
    s = np.linspace(0, 3, steps, endpoint=False)
    k = s.astype(int)
    frac = (s - k)[:, None]
    return corners[k] * (1 - frac) + corners[k + 1] * frac


def _shift_bilinear(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate a [H, W] image by a sub-pixel offset (edges replicated)."""
    H, W = img.shape
    ys = np.clip(np.arange(H) - dy, 0, H - 1)
    xs = np.clip(np.arange(W) - dx, 0, W - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bot = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bot * wy


def emulate_events(
    image,
    *,
    sensor_size: int = SENSOR,
    steps: int = 60,
    amplitude: float = 3.0,
    threshold: float = 0.15,
    duration_us: int = 300_000,
    seed: int = 0,
    noise: float = 0.0,
) -> np.ndarray:
    """DVS-like events from a static image moved along a saccade path (log-intensity change
    detection, as in ESIM / v2e, without sensor non-idealities).

    The grey image is upsampled to ``sensor_size``; at each of ``steps`` positions the log
    intensity ``L = log(I + 0.02)`` is compared per pixel with its value at that pixel's last
    event: every crossing of ``threshold`` emits one ON (p=1) or OFF (p=0) event and moves the
    reference by ``±threshold``.  Timestamps are spread over ``duration_us``; ``noise`` adds
    Gaussian jitter to the thresholds (per pixel, seeded).
    """
    img = torch.as_tensor(np.asarray(image))
    if img.ndim == 3:  # [C, H, W] -> grey
        img = img.float().mean(0) if img.shape[0] in (1, 3) else img.float().mean(-1)
    if img.ndim != 2:
        raise InputError(
            f"emulate_events: expected an image [C, H, W] or [H, W], got shape {tuple(img.shape)}"
        )
    img = img.float()
    if img.max() > 1.0:
        img = img / 255.0
    grey = F.interpolate(
        img[None, None], size=(sensor_size, sensor_size), mode="bilinear", align_corners=False
    )
    grey = grey[0, 0].numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    thr = (
        threshold * (1 + noise * rng.standard_normal(grey.shape)) if noise else np.full(grey.shape, threshold)
    )
    thr = np.maximum(thr, 1e-3)
    path = _saccade_path(steps + 1, amplitude)
    ref = np.log(_shift_bilinear(grey, *path[0]) + 0.02)
    out = []
    dt = duration_us / steps
    for k in range(1, steps + 1):
        L = np.log(_shift_bilinear(grey, *path[k]) + 0.02)
        diff = L - ref
        n = np.floor(np.abs(diff) / thr).astype(np.int64)
        ys, xs = np.nonzero(n)
        if len(ys):
            counts = n[ys, xs]
            pol = (diff[ys, xs] > 0).astype(np.int8)
            ys_r, xs_r, pol_r = np.repeat(ys, counts), np.repeat(xs, counts), np.repeat(pol, counts)
            t = ((k - 1) * dt + rng.uniform(0, dt, len(ys_r))).astype(np.int64)
            ev = np.empty(len(t), dtype=EVENT_DTYPE)
            ev["t"], ev["x"], ev["y"], ev["p"] = t, xs_r, ys_r, pol_r
            out.append(ev)
            ref[ys, xs] += np.sign(diff[ys, xs]) * n[ys, xs] * thr[ys, xs]
    if not out:
        return np.empty(0, dtype=EVENT_DTYPE)
    ev = np.concatenate(out)
    return ev[np.argsort(ev["t"], kind="stable")]


class EmulatedEvents(torch.utils.data.Dataset):
    """Event frames emulated from any image data set (:class:`~rmpsnn.data.ImageArrays`, or a
    dataset of ``(image, label)``), as CIFAR10-DVS was recorded from CIFAR-10 on a screen.

    Items: ``(frames float32 [T, 2, size, size], label)`` -- the same shapes and pipeline as
    :class:`CIFAR10DVS` (emulate -> integrate into T frames -> resize -> optional augmentation).
    Deterministic per item (seeded by ``(seed, index)``).
    """

    def __init__(
        self,
        images,
        *,
        timesteps: int = 10,
        size: int = 48,
        augment: bool = False,
        seed: int = 0,
        split_by: str = "number",
        T: int | None = None,
        **emulator_kwargs,
    ):
        timesteps = resolve_timesteps(timesteps, T)
        self.images = images
        self.timesteps, self.size, self.augment = timesteps, size, augment
        self.seed, self.split_by = seed, split_by
        self.emulator_kwargs = emulator_kwargs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def _item(self, i):
        if hasattr(self.images, "images") and hasattr(self.images, "labels"):
            return self.images.images[i], int(self.images.labels[i])
        img, label = self.images[i]
        return img, int(label)

    def __getitem__(self, i: int):
        img, label = self._item(i)
        ev = emulate_events(img, seed=mix_seed(self.seed, i) % (2**32), **self.emulator_kwargs)
        sensor = self.emulator_kwargs.get("sensor_size", SENSOR)
        frames = torch.from_numpy(events_to_frames(ev, self.timesteps, (sensor, sensor), self.split_by))
        frames = resize_frames(frames, self.size)
        if self.augment:
            frames = augment_event_frames(
                frames, torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, i))
            )
        return frames, label


@register_dataset("emulated-dvs", input="events", options=EventOptions)
def _emulated_dvs(cfg, ctx):
    """DVS-like events emulated from the image set at root (an offline CIFAR10-DVS stand-in)"""
    from .registry import dataset_bundle, image_arrays, limited

    size = dataset_options(cfg).size
    base = dataclasses.replace(cfg, dataset="images", options={})
    kw = {"timesteps": ctx.timesteps, "size": size, "seed": ctx.seed}
    base_train = limited(image_arrays(base, "train", ctx.seed), cfg.train_limit, ctx.seed)
    base_test = limited(image_arrays(base, "test", ctx.seed), cfg.test_limit, ctx.seed)
    train = EmulatedEvents(base_train, augment=True, **kw)
    test = EmulatedEvents(base_test, **kw)
    shape = (2, size, size)
    return dataset_bundle(cfg, ctx, train, test, num_classes=base_train.num_classes, input_shape=shape)
