"""Unbounded inputs are refused before they are allocated (issue 26): a number of time steps whose
activations cannot fit, a zip entry that expands to gigabytes, an image of 400 M pixels, splits of
different image sizes.  The error names the number and how to lower it; never a kill by the OS."""

import shutil
import struct
import zipfile
import zlib

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rmpsnn import limits
from rmpsnn.data import images as image_io
from rmpsnn.data.images import load_image_folder
from rmpsnn.errors import DataError
from rmpsnn.training import train

from .conftest import write_two_class_folder
from .test_faults import TINY, assert_one_line, cli


@pytest.fixture
def small_machine(monkeypatch, tmp_path):
    """As if this machine had 8 GiB available (the checks scale with what is available)."""
    monkeypatch.setattr(limits, "available_memory", lambda: 8 << 30)
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("limits") / "run"
    train(None, [*TINY, f"run.out={run}"], log=lambda _: None)
    return run


def test_time_steps_that_cannot_fit_are_refused_before_training(small_machine, tmp_path, capsys):
    rc, err = cli(capsys, "train", *TINY, "model.timesteps=100000", f"run.out={tmp_path / 'run'}")
    assert_one_line(rc, err, "100000 time steps", "GiB", "lower model.timesteps or optim.batch_size")
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_time_steps_of_evaluate_and_of_a_checkpoint_are_bounded(small_machine, spiking_run, tmp_path, capsys):
    rc, err = cli(capsys, "evaluate", "--checkpoint", spiking_run, "--timesteps", "100000000")
    assert_one_line(rc, err, "100000000 time steps", "lower --timesteps")
    path = tmp_path / "m.safetensors"
    shutil.copy(spiking_run / "best.safetensors", path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    for steps in (10**9, 1e9, -3):
        kwargs = meta["kwargs"].replace('"timesteps": ', f'"timesteps": {steps}, "_old": ')
        save_file(load_file(str(path)), str(path), metadata={**meta, "kwargs": kwargs})
        rc, err = cli(capsys, "evaluate", "--checkpoint", path)
        assert_one_line(rc, err, str(path))


def _png_header_only(path, width, height):
    """A PNG that declares ``width x height`` (its header is all a decoder reads first)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


@pytest.mark.parametrize("side", [20000, 9000])  # beyond PIL's error bound, and within its warning band
def test_huge_images_are_refused_from_their_header(tmp_path, side):
    root = write_two_class_folder(tmp_path / "imgs", size=8, n_train=2, n_test=1)
    _png_header_only(root / "train" / "dark" / "0.png", side, side)
    with pytest.raises(DataError, match=r"0\.png.*(resize it beforehand)") as e:
        load_image_folder(root, "train", cache=False, workers=1)
    assert "\n" not in str(e.value)


def test_a_zip_entry_that_expands_beyond_an_image_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_IMAGE_FILE_BYTES", 100_000)
    root = write_two_class_folder(tmp_path / "imgs", size=8, n_train=2, n_test=1)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(root))
        z.writestr("train/dark/zzz.png", b"\0" * 1_000_000)  # 1 MB of zeros: 1 kB compressed
    assert bomb.stat().st_size < 20_000
    with pytest.raises(DataError, match=r"zzz\.png is 1 MiB uncompressed"):
        load_image_folder(bomb, "train", cache=False, workers=1)


def test_splits_of_different_image_sizes_fail_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    root = write_two_class_folder(tmp_path / "imgs", size=8, n_train=8, n_test=2)
    big = write_two_class_folder(tmp_path / "big", size=12, n_train=1, n_test=2)
    shutil.rmtree(root / "test")
    shutil.copytree(big / "test", root / "test")
    rc, err = cli(
        capsys, "train", *TINY[1:], "data.dataset=images", f"data.root={root}", f"run.out={tmp_path / 'r'}"
    )
    assert_one_line(rc, err, "[3, 8, 8]", "[3, 12, 12]", "one size")
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_images_the_model_cannot_take_fail_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    root = write_two_class_folder(tmp_path / "imgs", size=1, n_train=8, n_test=2)
    rc, err = cli(
        capsys, "train", *TINY[1:], "data.dataset=images", f"data.root={root}", "model.name=cpu_net",
        f"run.out={tmp_path / 'r'}",
    )  # fmt: skip
    assert_one_line(rc, err, "[3, 1, 1]")
