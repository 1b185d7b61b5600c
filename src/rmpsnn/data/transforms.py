"""Image transforms on tensors, batched where the maths allows, reproducible under a generator.

Batched transforms take a float batch ``[B, C, H, W]`` (values in [0, 1] before
:class:`Normalize`) and draw one random choice per sample from ``generator``:
:class:`RandomCrop` (with padding), :class:`RandomHorizontalFlip`, :class:`Cutout`,
:class:`Normalize`.  Per-image transforms work on one uint8 image (tensor ``[C, H, W]`` or PIL
image) with Pillow: :class:`AutoAugment` (CIFAR-10 and ImageNet policies of Cubuk et al., CVPR
2019), and the ImageNet crops :class:`RandomResizedCrop`, :class:`Resize`, :class:`CenterCrop`.
All take ``generator=`` and give the same output for the same generator state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from ..errors import InputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AutoAugment",
    "CenterCrop",
    "Compose",
    "Cutout",
    "ImageNetEval",
    "ImageNetTrain",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "to_float",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., C, H, W]`` -> float32 in [0, 1]."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _check_batch(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise InputError(f"{what}: expected a batch [B, C, H, W], got shape {tuple(x.shape)}")


def _rand(n, generator, device):
    return torch.rand(n, generator=generator).to(device)


class Compose:
    """Apply transforms in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x, generator: torch.Generator | None = None):
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class Normalize:
    """``(x - mean) / std`` per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        shape = (1,) * (x.ndim - 3) + (-1, 1, 1)
        m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        s = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return (x - m) / s

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """Zero-pad by ``padding`` and crop ``size`` at a random position, independently per sample
    (one gather for the whole batch)."""

    def __init__(self, size: int | tuple[int, int], padding: int = 4):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding = int(padding)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        _check_batch(x, "RandomCrop")
        B, _, H, W = x.shape
        p, (h, w) = self.padding, self.size
        xp = F.pad(x, (p, p, p, p)) if p else x
        Hp, Wp = H + 2 * p, W + 2 * p
        if h > Hp or w > Wp:
            raise InputError(f"RandomCrop: crop {h}x{w} larger than padded image {Hp}x{Wp}")
        oy = (torch.rand(B, generator=generator) * (Hp - h + 1)).long().to(x.device)
        ox = (torch.rand(B, generator=generator) * (Wp - w + 1)).long().to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, h, 1]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, w]
        b = torch.arange(B, device=x.device)[:, None, None]
        return xp.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        flip = _rand(x.shape[0], generator, x.device) < self.p
        return torch.where(flip.reshape(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Cutout:
    """Cutout (DeVries & Taylor 2017): zero a ``size`` x ``size`` square at a random centre
    (clipped at the border) in each sample, with probability ``p``.  Apply after
    :class:`Normalize` so that the hole is the data mean."""

    def __init__(self, size: int = 16, p: float = 1.0):
        self.size, self.p = int(size), float(p)

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        _check_batch(x, "Cutout")
        B, _, H, W = x.shape
        cy = (torch.rand(B, generator=generator) * H).long().to(x.device)
        cx = (torch.rand(B, generator=generator) * W).long().to(x.device)
        on = _rand(B, generator, x.device) < self.p
        r = torch.arange(H, device=x.device)[None, :, None]
        c = torch.arange(W, device=x.device)[None, None, :]
        half = self.size // 2
        y0, x0 = cy - half, cx - half
        hole = (r >= y0[:, None, None]) & (r < (y0 + self.size)[:, None, None])
        hole = hole & (c >= x0[:, None, None]) & (c < (x0 + self.size)[:, None, None])
        hole = hole & on[:, None, None]
        return x.masked_fill(hole[:, None], 0.0)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


# ----------------------------------------------------------------------------- per image (Pillow)
def _to_pil(img):
    if isinstance(img, Image.Image):
        return img, True
    if torch.is_tensor(img):
        if img.dtype != torch.uint8 or img.ndim != 3:
            raise InputError(f"expected a uint8 image tensor [C, H, W], got {img.dtype} {tuple(img.shape)}")
        return Image.fromarray(img.permute(1, 2, 0).numpy()), False
    raise TypeError(f"expected a PIL image or a uint8 tensor [C, H, W], got {type(img).__name__}")


def _from_pil(pil, as_pil: bool):
    if as_pil:
        return pil
    return torch.from_numpy(np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1).copy())


def _uniform(generator, lo=0.0, hi=1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


# AutoAugment sub-policies (Cubuk et al., "AutoAugment", CVPR 2019): (op, probability, magnitude bin)
_POLICIES = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
}  # fmt: skip

_SIGNED = {
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}


def _magnitude(op: str, bin_: int | None, size: tuple[int, int], bins: int = 10) -> float:
    """Magnitude of bin ``bin_`` of ``bins`` on the AutoAugment search space."""
    if bin_ is None:
        return 0.0
    frac = bin_ / (bins - 1)
    w, h = size
    return {
        "ShearX": 0.3 * frac, "ShearY": 0.3 * frac,
        "TranslateX": 150 / 331 * w * frac, "TranslateY": 150 / 331 * h * frac,
        "Rotate": 30 * frac, "Brightness": 0.9 * frac, "Color": 0.9 * frac, "Contrast": 0.9 * frac,
        "Sharpness": 0.9 * frac, "Posterize": float(round(8 - 4 * frac)), "Solarize": 255 * (1 - frac),
    }.get(op, 0.0)  # fmt: skip


def _apply_op(img, op: str, mag: float, fill=(128, 128, 128)):
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, mag, 0, 0, 1, 0), Image.NEAREST, fillcolor=fill)
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, mag, 1, 0), Image.NEAREST, fillcolor=fill)
    if op == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, -mag, 0, 1, 0), Image.NEAREST, fillcolor=fill)
    if op == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, -mag), Image.NEAREST, fillcolor=fill)
    if op == "Rotate":
        return img.rotate(mag, resample=Image.NEAREST, fillcolor=fill)
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1 + mag)
    if op == "Color":
        return ImageEnhance.Color(img).enhance(1 + mag)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1 + mag)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1 + mag)
    if op == "Posterize":
        return ImageOps.posterize(img, int(mag))
    if op == "Solarize":
        return ImageOps.solarize(img, int(mag))
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    raise InputError(f"unknown AutoAugment operation {op!r}")


class AutoAugment:
    """AutoAugment with the learned ``"cifar10"`` or ``"imagenet"`` policy: pick one of 25
    sub-policies, apply each of its two operations with its probability and magnitude (the sign
    of signed operations drawn at random).  Input/output: uint8 tensor ``[C, H, W]`` or PIL image."""

    def __init__(self, policy: str = "cifar10", fill: tuple[int, int, int] = (128, 128, 128)):
        if policy not in _POLICIES:
            raise InputError(f"unknown AutoAugment policy {policy!r}; valid values: {', '.join(_POLICIES)}")
        self.policy = policy
        self.fill = tuple(fill)

    def __call__(self, img, generator: torch.Generator | None = None):
        pil, as_pil = _to_pil(img)
        sub = _POLICIES[self.policy][int(torch.randint(len(_POLICIES[self.policy]), (), generator=generator))]
        for op, prob, bin_ in sub:
            if _uniform(generator) > prob:
                continue
            mag = _magnitude(op, bin_, pil.size)
            if op in _SIGNED and _uniform(generator) < 0.5:
                mag = -mag
            pil = _apply_op(pil, op, mag, self.fill)
        return _from_pil(pil, as_pil)

    def __repr__(self) -> str:
        return f"AutoAugment(policy={self.policy!r})"


class RandomResizedCrop:
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio`` and resize to ``size``
    (Szegedy et al. 2015; the standard ImageNet training crop).  Falls back to a centre crop."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)

    def __call__(self, img, generator=None):
        pil, as_pil = _to_pil(img)
        W, H = pil.size
        area = W * H
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(generator, *self.scale)
            ar = math.exp(_uniform(generator, *log_r))
            w = round(math.sqrt(target * ar))
            h = round(math.sqrt(target / ar))
            if 0 < w <= W and 0 < h <= H:
                top = int(_uniform(generator) * (H - h + 1))
                left = int(_uniform(generator) * (W - w + 1))
                break
        else:  # centre crop at the clamped aspect ratio
            in_r = W / H
            if in_r < self.ratio[0]:
                w, h = W, round(W / self.ratio[0])
            elif in_r > self.ratio[1]:
                h, w = H, round(H * self.ratio[1])
            else:
                w, h = W, H
            top, left = (H - h) // 2, (W - w) // 2
        out = pil.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))
        return _from_pil(out, as_pil)


class Resize:
    """Resize the shorter side to ``size`` (aspect ratio kept)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img, generator=None):
        pil, as_pil = _to_pil(img)
        W, H = pil.size
        s = self.size / min(W, H)
        return _from_pil(pil.resize((max(1, round(W * s)), max(1, round(H * s))), Image.BILINEAR), as_pil)


class CenterCrop:
    """Crop the central ``size`` x ``size`` region."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img, generator=None):
        pil, as_pil = _to_pil(img)
        W, H = pil.size
        left, top = (W - self.size) // 2, (H - self.size) // 2
        return _from_pil(pil.crop((left, top, left + self.size, top + self.size)), as_pil)


class _PilFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img, generator=None):
        pil, as_pil = _to_pil(img)
        if _uniform(generator) < self.p:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        return _from_pil(pil, as_pil)


class _ToTensor:
    def __call__(self, img, generator=None):
        pil, _ = _to_pil(img)
        return _from_pil(pil, False)


def ImageNetTrain(size: int = 224, autoaugment: bool = False) -> Compose:
    """Per-image ImageNet training transform: random-resized crop, flip, (AutoAugment) -> uint8 tensor.
    Normalise the batch afterwards with ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``."""
    ts = [RandomResizedCrop(size), _PilFlip()]
    if autoaugment:
        ts.append(AutoAugment("imagenet"))
    return Compose([*ts, _ToTensor()])


def ImageNetEval(size: int = 224, resize: int = 256) -> Compose:
    """Per-image ImageNet evaluation transform: resize the short side to 256, centre-crop 224."""
    return Compose([Resize(resize), CenterCrop(size), _ToTensor()])
