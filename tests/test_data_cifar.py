"""CIFAR loaders on small files written in the exact pickle layout of the official archives."""

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest

from rmpsnn.data import cifar, load_cifar10, load_cifar100
from rmpsnn.errors import DataError

from .conftest import closed_port

CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10(root, per_batch=4):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        _write(
            base / name,
            {
                b"batch_label": name.encode(),
                b"labels": list(rng.integers(0, 10, per_batch)),
                b"data": data,
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    _write(base / "batches.meta", {b"label_names": [c.encode() for c in CLASSES10], b"num_vis": 3072})
    return base


def test_cifar10_reads_official_layout(tmp_path):
    base = make_cifar10(tmp_path)
    train = load_cifar10(tmp_path, "train")
    test = load_cifar10(tmp_path, "test")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.classes == CLASSES10
    # channel planes: the first 1024 bytes of a row are the red plane, row-major
    with open(base / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert np.array_equal(train.images[0, 0].reshape(-1), d[b"data"][0, :1024])
    assert np.array_equal(train.images[0, 2, 31], d[b"data"][0, 2048 + 31 * 32 : 2048 + 32 * 32])
    assert train.labels[:4].tolist() == [int(v) for v in d[b"labels"]]


def test_cifar100_fine_and_coarse(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("test", 3)):
        _write(
            base / split,
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": list(range(n)),
                b"coarse_labels": [0] * n,
            },
        )
    _write(
        base / "meta",
        {
            b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)],
        },
    )
    fine = load_cifar100(tmp_path, "train")
    assert fine.images.shape == (6, 3, 32, 32) and fine.labels.tolist() == list(range(6))
    assert fine.num_classes == 100
    coarse = load_cifar100(tmp_path, "test", coarse=True)
    assert coarse.num_classes == 20 and coarse.labels.tolist() == [0, 0, 0]


def test_truncated_and_corrupt_files_name_the_file(tmp_path):
    base = make_cifar10(tmp_path)
    raw = (base / "data_batch_3").read_bytes()
    (base / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data_batch_3.*corrupt or truncated"):
        load_cifar10(tmp_path)
    (base / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing file .*data_batch_3"):
        load_cifar10(tmp_path)


def test_refuses_pickles_that_run_code(tmp_path):
    base = make_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    _write(base / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tmp_path, "test")


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*not found.*Put the extracted"):
        load_cifar10(tmp_path / "nowhere")


def test_download_fails_fast_with_a_clear_message_offline(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz"
    monkeypatch.setitem(cifar._SOURCES, "cifar10", ("cifar-10-batches-py", url, "0" * 32))
    with pytest.raises(DataError, match=r"could not download.*no internet access.*Put the extracted"):
        load_cifar10(tmp_path, download=True)


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_cifar10(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
        md5 = hashlib.md5(buf.getvalue()).hexdigest()
        monkeypatch.setitem(cifar._SOURCES, "cifar10", ("cifar-10-batches-py", url, "f" * 32))
        with pytest.raises(DataError, match="wrong checksum"):
            load_cifar10(tmp_path / "dl", download=True)
        monkeypatch.setitem(cifar._SOURCES, "cifar10", ("cifar-10-batches-py", url, md5))
        data = load_cifar10(tmp_path / "dl", download=True)
        assert data.images.shape == (20, 3, 32, 32)
    finally:
        server.shutdown()
