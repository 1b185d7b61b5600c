import numpy as np
import pytest
import torch
from PIL import Image

from rmpsnn.data import transforms as T


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_takes_windows_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8)
    out = T.RandomCrop(8, padding=2)(x, generator=gen())
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(16):
        hits = [
            (i, j)
            for i in range(5)
            for j in range(5)
            if torch.equal(padded[b, :, i : i + 8, j : j + 8], out[b])
        ]
        assert hits, f"sample {b} is not a window of its padded image"
    offsets = {torch.nonzero(out[b, 0] != 0).min(0).values.tolist().__str__() for b in range(16)}
    assert len(offsets) > 1  # different samples, different offsets
    assert torch.equal(T.RandomCrop(8, padding=0)(x, generator=gen()), x)
    assert torch.equal(out, T.RandomCrop(8, padding=2)(x, generator=gen()))  # reproducible


def test_flip_and_cutout():
    x = torch.rand(400, 3, 6, 6)
    out = T.RandomHorizontalFlip()(x, generator=gen())
    flipped = torch.tensor([torch.equal(out[b], x[b].flip(-1)) for b in range(400)])
    assert 150 < int(flipped.sum()) < 250
    assert all(torch.equal(out[b], x[b]) for b in range(400) if not flipped[b])
    ones = torch.ones(200, 3, 32, 32)
    cut = T.Cutout(8)(ones, generator=gen())
    zeros = (cut[:, 0] == 0).sum((1, 2))
    assert zeros.max() == 64 and zeros.min() > 0  # a full 8x8 hole inside, clipped at borders
    assert torch.equal(cut[:, 0] == 0, cut[:, 2] == 0)  # same hole in every channel
    assert torch.equal(T.Cutout(8, p=0.0)(ones, generator=gen()), ones)


def test_normalize_and_compose():
    x = torch.full((2, 3, 4, 4), 0.5)
    out = T.Normalize([0.5, 0.25, 0.0], [0.5, 0.25, 0.5])(x)
    assert (
        out[:, 0].abs().max() == 0
        and torch.allclose(out[:, 1], torch.ones(1))
        and torch.allclose(out[:, 2], torch.ones(1))
    )
    comp = T.Compose([T.RandomCrop(4, 1), T.RandomHorizontalFlip()])
    assert torch.equal(comp(x, generator=gen(1)), comp(x, generator=gen(1)))
    with pytest.raises(ValueError, match=r"expected a batch \[B, C, H, W\]"):
        T.RandomCrop(4)(torch.rand(3, 4, 4))


@pytest.mark.parametrize("policy", ["cifar10", "imagenet"])
def test_autoaugment_policies(policy):
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    aa = T.AutoAugment(policy)
    outs = [aa(img, generator=gen(s)) for s in range(20)]
    assert all(o.shape == img.shape and o.dtype == torch.uint8 for o in outs)
    assert torch.equal(outs[3], aa(img, generator=gen(3)))  # reproducible under a seed
    assert sum(not torch.equal(o, img) for o in outs) >= 10  # it does change most images
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    assert isinstance(aa(pil, generator=gen(0)), Image.Image)
    with pytest.raises(ValueError, match="valid values: imagenet, cifar10"):
        T.AutoAugment("svhn2")


def test_every_autoaugment_operation_runs():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for op in [
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
        "Rotate",
        "Brightness",
        "Color",
        "Contrast",
        "Sharpness",
        "Posterize",
        "Solarize",
        "AutoContrast",
        "Equalize",
        "Invert",
    ]:
        mag = T._magnitude(op, 9, img.size)
        out = T._apply_op(img, op, mag)
        assert out.size == img.size, op
    assert T._magnitude("Posterize", 0, (32, 32)) == 8 and T._magnitude("Posterize", 9, (32, 32)) == 4
    assert T._magnitude("TranslateX", 9, (331, 331)) == pytest.approx(150)


def test_imagenet_crops():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    rrc = T.RandomResizedCrop(24)
    a = rrc(img, generator=gen(4))
    assert a.size == (24, 24)
    assert np.array_equal(np.asarray(a), np.asarray(rrc(img, generator=gen(4))))
    r = T.Resize(30)(img)
    assert min(r.size) == 30 and r.size == (45, 30)
    assert T.CenterCrop(20)(r).size == (20, 20)
    t = T.ImageNetEval(16, resize=20)(img)
    assert t.shape == (3, 16, 16) and t.dtype == torch.uint8
