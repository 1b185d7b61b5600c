"""Event data: AEDAT 2.0 files written in the exact on-disk format, frames, CIFAR10-DVS, emulator."""

import numpy as np
import pytest
import torch

from rmpsnn.data import (
    CIFAR10DVS,
    EmulatedEvents,
    ImageArrays,
    augment_event_frames,
    collate_time_major,
    emulate_events,
    events_to_frames,
    read_aedat,
    write_aedat,
)
from rmpsnn.data.events import EVENT_DTYPE
from rmpsnn.errors import DataError

from .conftest import closed_port


def random_events(n, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 1_000_000, n))
    ev["x"], ev["y"] = rng.integers(0, 128, n), rng.integers(0, 128, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def test_aedat2_byte_layout(tmp_path):
    """One hand-encoded event: big-endian address then timestamp after a '#' header."""
    addr = (100 << 8) | (20 << 1) | 1  # y_raw=100, x_raw=20, raw polarity 1 (OFF)
    body = np.array([addr, 1234], dtype=">u4").tobytes()
    f = tmp_path / "one.aedat"
    f.write_bytes(b"#!AER-DAT2.0\r\n# comment\r\n" + body)
    ev = read_aedat(f)
    assert ev["t"].tolist() == [1234]
    assert ev["x"].tolist() == [127 - 100] and ev["y"].tolist() == [127 - 20] and ev["p"].tolist() == [0]


def test_aedat_roundtrip_and_errors(tmp_path):
    ev = random_events(500)
    f = tmp_path / "rec.aedat"
    write_aedat(f, ev)
    back = read_aedat(f)
    for k in ("t", "x", "y", "p"):
        assert np.array_equal(back[k], ev[k]), k
    raw = f.read_bytes()
    (tmp_path / "cut.aedat").write_bytes(raw[:-3])
    with pytest.raises(DataError, match=r"cut.aedat: .*not a multiple of 8 \(truncated"):
        read_aedat(tmp_path / "cut.aedat")
    (tmp_path / "junk.aedat").write_bytes(b"hello")
    with pytest.raises(DataError, match=r"junk.aedat: not an AEDAT file"):
        read_aedat(tmp_path / "junk.aedat")
    (tmp_path / "v3.aedat").write_bytes(b"#!AER-DAT3.1\r\n")
    with pytest.raises(DataError, match=r"version 3\.1 is not supported"):
        read_aedat(tmp_path / "v3.aedat")


def test_events_to_frames_counts():
    ev = random_events(1000)
    frames = events_to_frames(ev, 10)
    assert frames.shape == (10, 2, 128, 128) and frames.sum() == 1000
    assert frames.sum((1, 2, 3)).tolist() == [100.0] * 10  # split by number: equal shares
    assert frames[:, 1].sum() == ev["p"].sum()
    e = ev[0]
    assert frames[0, e["p"], e["y"], e["x"]] >= 1
    by_time = events_to_frames(ev, 4, split_by="time")
    assert by_time.sum() == 1000
    with pytest.raises(ValueError, match="split_by"):
        events_to_frames(ev, 4, split_by="count")


def make_dvs(root, per_class=10, classes=("airplane", "automobile")):
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            write_aedat(d / f"cifar10_{name}_{i}.aedat", random_events(200 + i, seed=100 * c + i))
    return root


def test_cifar10dvs_split_shapes_and_cache(tmp_path):
    root = make_dvs(tmp_path / "dvs")
    train = CIFAR10DVS(root, "train", cache_root=tmp_path / "cache")
    test = CIFAR10DVS(root, "test", cache_root=tmp_path / "cache")
    assert len(train) == 18 and len(test) == 2  # 9:1 per class
    assert [f.name for f in test.files] == ["cifar10_airplane_9.aedat", "cifar10_automobile_9.aedat"]
    x, y = test[1]
    assert x.shape == (10, 2, 48, 48) and x.dtype == torch.float32 and y == 1
    # frames are the integrated events, resized by area averaging (the total count scales by area;
    # 128 -> 48 is not an integer ratio, so windows overlap and the scaling is approximate)
    ev = read_aedat(test.files[1])
    assert x.sum().item() == pytest.approx(len(ev) * (48 / 128) ** 2, rel=0.05)
    cached = list((tmp_path / "cache").glob("cifar10dvs-*.npy"))
    assert len(cached) == 2
    again = CIFAR10DVS(root, "test", cache_root=tmp_path / "cache")
    assert torch.equal(again[1][0], x)
    # training items are augmented reproducibly (seeded by seed, epoch and index)
    a, b = train[3][0], CIFAR10DVS(root, "train", cache_root=tmp_path / "cache")[3][0]
    assert torch.equal(a, b)
    train.set_epoch(1)
    assert not torch.equal(train[3][0], a) or not torch.equal(train[4][0], b)
    loader = torch.utils.data.DataLoader(train, batch_size=4, collate_fn=collate_time_major)
    frames, labels = next(iter(loader))
    assert frames.shape == (10, 4, 2, 48, 48) and labels.shape == (4,)


def test_cifar10dvs_errors(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR10-DVS not found.*<class>/\*\.aedat"):
        CIFAR10DVS(tmp_path / "missing")
    root = make_dvs(tmp_path / "dvs", per_class=10, classes=("cat",))
    (root / "cat" / "cifar10_cat_3.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 13)
    with pytest.raises(DataError, match=r"cifar10_cat_3.aedat: .*truncated"):
        CIFAR10DVS(root, "train", cache=False)


def test_event_augmentation():
    frames = torch.arange(2 * 2 * 6 * 6, dtype=torch.float32).reshape(2, 2, 6, 6)
    out = augment_event_frames(frames, torch.Generator().manual_seed(0), flip_p=1.0, max_roll=0)
    assert torch.equal(out, frames.flip(-1))
    rolled = augment_event_frames(frames, torch.Generator().manual_seed(1), flip_p=0.0, max_roll=2)
    found = [
        (dy, dx)
        for dy in range(-2, 3)
        for dx in range(-2, 3)
        if torch.equal(rolled, torch.roll(frames, (dy, dx), (-2, -1)))
    ]
    assert len(found) == 1


def test_emulator_sees_edges_not_flat_images():
    img = np.zeros((3, 32, 32), dtype=np.uint8)
    img[:, 8:24, 8:24] = 220  # a bright square
    ev = emulate_events(img, steps=30)
    assert len(ev) > 100 and set(np.unique(ev["p"]).tolist()) == {0, 1}
    assert np.all(np.diff(ev["t"]) >= 0)
    # events sit at the square's edges (at 32 and 96 once upsampled 4x to 128), not inside it
    x, y = ev["x"].astype(int), ev["y"].astype(int)
    near_edge = (np.minimum(np.abs(x - 32), np.abs(x - 96)) < 12) | (
        np.minimum(np.abs(y - 32), np.abs(y - 96)) < 12
    )
    assert np.mean(near_edge) > 0.95
    assert np.mean((x > 48) & (x < 80) & (y > 48) & (y < 80)) < 0.01
    flat = np.full((3, 32, 32), 128, dtype=np.uint8)
    assert len(emulate_events(flat)) == 0
    with pytest.raises(ValueError, match="expected an image"):
        emulate_events(np.zeros(5))


def test_emulated_event_dataset_over_images():
    rng = np.random.default_rng(0)
    imgs = ImageArrays(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.arange(6) % 2, ["a", "b"])
    ds = EmulatedEvents(imgs, timesteps=5, size=32, steps=20)
    x, y = ds[2]
    assert x.shape == (5, 2, 32, 32) and x.sum() > 0 and y == 0
    assert torch.equal(ds[2][0], x)  # deterministic per item
    frames, labels = collate_time_major([ds[i] for i in range(3)])
    assert frames.shape == (5, 3, 2, 32, 32) and labels.tolist() == [0, 1, 0]
    with pytest.warns(DeprecationWarning, match="use timesteps="):  # the old keyword still works
        old = EmulatedEvents(imgs, T=5, size=32, steps=20)
    assert old.timesteps == 5 and torch.equal(old[2][0], x)


def test_cifar10dvs_download_fails_fast_offline(tmp_path, monkeypatch):
    from rmpsnn.data import events

    monkeypatch.setattr(events, "_CIFAR10DVS_URL", f"http://127.0.0.1:{closed_port()}/{{}}")
    monkeypatch.setattr(events, "_CIFAR10DVS_FILES", {"airplane": (1, "0" * 32)})
    with pytest.raises(
        DataError, match=r"could not download CIFAR10-DVS class 'airplane'.*airplane/\*\.aedat"
    ):
        CIFAR10DVS(tmp_path, download=True)
