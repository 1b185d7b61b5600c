"""Image folders (directory and zip), lazy ImageNet-style folders, the cache and the loader."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rmpsnn.data import ArrayLoader, ImageArrays, imagenet, load_image_folder
from rmpsnn.data import transforms as T
from rmpsnn.errors import DataError

COLORS = {"cat": (200, 10, 10), "ant": (10, 200, 10), "bee": (10, 10, 200)}


def make_folder(root, n=3, size=(8, 8), fmt="png", splits=("train", "test")):
    for split in splits:
        for cls, color in COLORS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.full((*size, 3), color, dtype=np.uint8)
                arr[0, 0] = i  # tell the files apart
                Image.fromarray(arr).save(d / f"{i:03d}.{fmt}")
    return root


def zip_folder(root, out):
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(root).as_posix())
    return out


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_image_folder_dir_and_zip(tmp_path, kind):
    src = make_folder(tmp_path / "imgs")
    if kind == "zip":
        src = zip_folder(src, tmp_path / "imgs.zip")
    data = load_image_folder(src, "train", cache_root=tmp_path / "cache", workers=1)
    assert data.classes == ["ant", "bee", "cat"]  # sorted by name
    assert data.images.shape == (9, 3, 8, 8) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.images[0, :, 1, 1].tolist() == list(COLORS["ant"])
    assert data.images[8, :, 1, 1].tolist() == list(COLORS["cat"])
    assert [int(v) for v in data.images[:3, 0, 0, 0]] == [0, 1, 2]
    # the second load comes from the cache and is identical
    again = load_image_folder(src, "train", cache_root=tmp_path / "cache", workers=1)
    assert "cache" in again.meta and np.array_equal(again.images, data.images)
    test = load_image_folder(src, "test", cache_root=tmp_path / "cache", workers=2)
    assert len(test) == 9


def test_parallel_decode_equals_serial(tmp_path):
    src = zip_folder(make_folder(tmp_path / "imgs", n=40, fmt="jpg"), tmp_path / "imgs.zip")
    a = load_image_folder(src, "train", cache=False, workers=1)
    b = load_image_folder(src, "train", cache=False, workers=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_cache_is_keyed_by_content(tmp_path):
    src = make_folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    first = load_image_folder(src, "train", cache_root=cache, workers=1)
    arr = np.full((8, 8, 3), 7, dtype=np.uint8)
    Image.fromarray(arr).save(src / "train" / "ant" / "999.png")
    changed = load_image_folder(src, "train", cache_root=cache, workers=1)
    assert len(changed) == len(first) + 1


def test_corrupt_image_names_the_file(tmp_path):
    src = make_folder(tmp_path / "imgs")
    (src / "train" / "bee" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"bee/001.png: cannot decode image"):
        load_image_folder(src, "train", cache=False, workers=1)


def test_mixed_sizes_need_a_size(tmp_path):
    src = make_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(src / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match="pass size="):
        load_image_folder(src, "train", cache=False, workers=1)
    data = load_image_folder(src, "train", cache=False, workers=1, size=(8, 8))
    assert data.images.shape == (10, 3, 8, 8)


def test_missing_folder_and_empty_split(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_image_folder(tmp_path / "empty", "train", cache=False)


def test_imagenet_folder_layout_and_transforms(tmp_path):
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(2):
                h, w = rng.integers(40, 90, 2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{wnid}_{i}.JPEG")
    train = imagenet(root, "train", transform=T.ImageNetTrain(32), seed=0)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == 0
    assert torch.equal(train[1][0], train[1][0])  # seeded: same item, same crop
    val = imagenet(root, "val", transform=T.ImageNetEval(32, resize=36))
    assert val[3][0].shape == (3, 32, 32) and val[3][1] == 1
    loader = torch.utils.data.DataLoader(val, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 32, 32) and yb.tolist() == [0, 0, 1, 1]
    flat = tmp_path / "flat"
    (flat / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="no class folders"):
        imagenet(flat, "val")


def _arrays(n=50):
    rng = np.random.default_rng(0)
    return ImageArrays(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), np.arange(n) % 5, list("abcde"))


def test_array_loader_epochs_and_reproducibility():
    data = _arrays()
    aug = T.Compose(
        [T.RandomCrop(8, padding=2), T.RandomHorizontalFlip(), T.Normalize([0.5] * 3, [0.25] * 3)]
    )
    a = ArrayLoader(data, 16, shuffle=True, seed=3, batch_transform=aug)
    b = ArrayLoader(data, 16, shuffle=True, seed=3, batch_transform=aug)
    batches_a, batches_b = list(a), list(b)
    assert len(batches_a) == len(a) == 4
    assert [x.shape[0] for x, _ in batches_a] == [16, 16, 16, 2]
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([y for _, y in batches_a]).tolist()) == sorted(data.labels.tolist())
    a.set_epoch(1)
    assert not torch.equal(next(iter(a))[1], batches_a[0][1])  # a new permutation
    dropped = ArrayLoader(data, 16, drop_last=True)
    assert len(dropped) == 3 and len(list(dropped)) == 3


def test_array_loader_shards_for_distributed_training():
    rng = np.random.default_rng(0)
    data = ImageArrays(rng.integers(0, 256, (10, 3, 4, 4), dtype=np.uint8), np.arange(10), list("abcdefghij"))
    shards = []
    for rank in range(3):
        loader = ArrayLoader(data, 2, shuffle=True, seed=1, rank=rank, world_size=3)
        assert len(loader) == 2
        ys = torch.cat([y for _, y in loader])
        assert len(ys) == 4  # ceil(10 / 3) samples per rank, padded by wrapping
        shards.append(ys)
    # every rank draws the same permutation, so the shards together cover every sample
    assert set(torch.cat(shards).tolist()) == set(range(10))


def test_sample_transform_is_reproducible_whatever_the_worker_count():
    data = _arrays(12)
    outs = []
    for workers in (0, 2):
        loader = ArrayLoader(
            data, 4, shuffle=True, seed=5, sample_transform=T.AutoAugment("cifar10"), num_workers=workers
        )
        outs.append(torch.cat([x for x, _ in loader]))
    assert torch.equal(outs[0], outs[1])


def test_shared_cifar10_zip_if_present():
    """The JPEG copy of CIFAR-10 in ../shared/data has the image-folder layout the loader expects."""
    from rmpsnn.data import shared_cifar10_zip
    from rmpsnn.data.images import _decode_chunk, list_image_folder

    path = shared_cifar10_zip(__file__)
    if path is None:
        pytest.skip("../shared/data/cifar10-jpeg.zip not present")
    classes, items = list_image_folder(path, "test")
    assert classes == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert len(items) == 10_000 and np.bincount([lab for _, lab in items]).tolist() == [1000] * 10
    imgs = _decode_chunk((str(path), [m for m, _ in items[:20]], None))
    assert imgs.shape == (20, 3, 32, 32) and imgs.dtype == np.uint8 and imgs.std() > 10


def test_balanced_subsets():
    import numpy as np

    from rmpsnn.data import ImageArrays

    labels = np.repeat(np.arange(3), [10, 5, 7])
    data = ImageArrays(np.zeros((22, 1, 2, 2), np.uint8), labels, ["a", "b", "c"])
    sub = data.balanced(9, seed=1)
    assert np.bincount(sub.labels).tolist() == [3, 3, 3]
    assert np.bincount(data.balanced(1).labels).tolist() == [1, 1, 1]  # at least one per class
    assert data.balanced(None) is data and data.balanced(0) is data
    assert np.array_equal(data.balanced(9, seed=1).labels, sub.labels)  # seeded
