"""Every file rmpsnn writes goes through one atomic write (rmpsnn.io): on a full disk or a read-only
folder the previous file stays exactly as it was, no temporary file is left, and the command says
so in one line (exit 2).  The faults are injected (ENOSPC / EROFS raised where the operating system
would raise them), so the test needs no special file system."""

import errno
import os

import pytest
from safetensors import SafetensorError

from rmpsnn import io as rio
from rmpsnn.checkpoint import load_model, save_model
from rmpsnn.errors import RmpsnnError, WriteError
from rmpsnn.models import create
from rmpsnn.training import train

from .conftest import write_two_class_folder
from .test_faults import TINY, assert_one_line, cli


def _fail_fsync(code):
    def fsync(fd):
        raise OSError(code, os.strerror(code))

    return fsync


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "run"
    train(None, [*TINY, f"run.out={run}"], log=lambda _: None)
    return run


def _siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    model = create("ann_cpu_net", width=[4, 8, 8])
    path = tmp_path / "m.safetensors"
    save_model(path, model, model_name="ann_cpu_net", model_kwargs={"width": [4, 8, 8]})
    before, names = path.read_bytes(), _siblings(tmp_path)
    monkeypatch.setattr(rio.os, "fsync", _fail_fsync(errno.ENOSPC))
    with pytest.raises(WriteError, match=r"cannot write .*m\.safetensors: No space left on device") as e:
        save_model(path, model, model_name="ann_cpu_net", model_kwargs={"width": [4, 8, 8]})
    assert isinstance(e.value, OSError) and isinstance(e.value, RmpsnnError)
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert path.read_bytes() == before and _siblings(tmp_path) == names
    load_model(path)


def test_safetensors_io_errors_become_write_errors(tmp_path, monkeypatch):
    """safetensors (Rust) reports a full disk as SafetensorError('... os error 28')."""
    import rmpsnn.checkpoint as ck

    def save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 10)  # half a file, then the disk is full
        raise SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull, os error 28 })"
        )

    model = create("ann_cpu_net", width=[4, 8, 8])
    path = tmp_path / "m.safetensors"
    save_model(path, model, model_name="ann_cpu_net", model_kwargs={})
    before = path.read_bytes()
    monkeypatch.setattr(ck, "save_file", save_file)
    with pytest.raises(WriteError, match="No space left on device"):
        save_model(path, model, model_name="ann_cpu_net", model_kwargs={})
    assert path.read_bytes() == before and _siblings(tmp_path) == ["m.safetensors"]


def test_a_bug_inside_a_write_keeps_its_traceback(tmp_path):
    def write(tmp):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        rio.atomic_write(tmp_path / "x", write)
    assert list(tmp_path.iterdir()) == []


def test_nir_export_over_a_good_file_on_a_full_disk(run_dir, tmp_path, capsys, monkeypatch):
    from rmpsnn.export import from_nir

    out = tmp_path / "m.nir"
    rc, err = cli(capsys, "export", "--checkpoint", run_dir, "--format", "nir", "--out", out)
    assert rc == 0, err
    before = out.read_bytes()
    monkeypatch.setattr(rio.os, "fsync", _fail_fsync(errno.ENOSPC))
    rc, err = cli(capsys, "export", "--checkpoint", run_dir, "--format", "nir", "--out", out)
    assert_one_line(rc, err, str(out), "No space left on device")
    assert out.read_bytes() == before and _siblings(tmp_path) == ["m.nir"]
    from_nir(out)  # still a readable graph


def test_evaluate_out_on_a_full_disk_and_in_a_read_only_folder(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval.json"
    out.write_text('{"previous": true}')
    monkeypatch.setattr(rio.os, "fsync", _fail_fsync(errno.ENOSPC))
    rc, err = cli(capsys, "evaluate", "--checkpoint", run_dir, "--out", out)
    assert_one_line(rc, err, str(out), "No space left on device")
    assert out.read_text() == '{"previous": true}' and _siblings(tmp_path) == ["eval.json"]
    monkeypatch.setattr(rio.os, "fsync", _fail_fsync(errno.EROFS))
    rc, err = cli(capsys, "evaluate", "--checkpoint", run_dir, "--out", out)
    assert_one_line(rc, err, str(out), "Read-only file system", "write somewhere else")
    assert out.read_text() == '{"previous": true}'


def test_training_on_a_full_disk_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import rmpsnn.training.state as st

    real_save, seen = st.save_file, {}

    def save_file(tensors, filename, metadata=None):  # the disk fills up during the second checkpoint
        if seen:
            seen["before"] = (tmp_path / "run" / "last.safetensors").read_bytes()
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, os error 28 })")
        seen["first"] = True
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", save_file)
    rc, err = cli(capsys, "train", *TINY, "optim.epochs=2", f"run.out={tmp_path / 'run'}")
    assert_one_line(rc, err, "last.safetensors", "No space left on device")
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == seen["before"]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_unwritable_folders_in_every_command(run_dir, tmp_path, capsys, monkeypatch):
    """A read-only folder (faked: mkdir raises EROFS, as it would) is one line naming the path."""
    real_mkdir = type(tmp_path).mkdir

    def mkdir(self, *a, **k):
        if "ro" in self.parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir)
    ro = tmp_path / "ro"
    cases = [
        ("export", "--checkpoint", run_dir, "--format", "nir", "--out", ro / "m.nir"),
        ("export", "--checkpoint", run_dir, "--format", "safetensors", "--out", ro / "exp"),
        ("evaluate", "--checkpoint", run_dir, "--out", ro / "e.json"),
        ("report", run_dir, "--out", ro / "report"),
        ("train", *TINY, f"run.out={ro / 'run'}"),
    ]
    for argv in cases:
        rc, err = cli(capsys, *argv)
        assert_one_line(rc, err, "Read-only file system", str(ro))
    folder = write_two_class_folder(tmp_path / "imgs", size=8, n_train=4, n_test=2)
    monkeypatch.setenv("RMPSNN_CACHE", str(ro / "cache"))
    rc, err = cli(
        capsys,
        "train",
        *TINY[1:],
        "data.dataset=images",
        f"data.root={folder}",
        f"run.out={tmp_path / 'run2'}",
    )
    assert_one_line(rc, err, "Read-only file system", str(ro / "cache"))


def test_a_killed_write_leaves_no_temporary_file_for_long(tmp_path):
    """A process killed mid-write leaves its temporary file; the next write of the same file
    removes it (its process is gone), but never a live writer's."""
    dead = tmp_path / ".last.safetensors.999999999.ab12cd34.tmp"
    live = tmp_path / f".last.safetensors.{os.getppid()}.ab12cd34.tmp"
    dead.write_bytes(b"\0" * 100)
    live.write_bytes(b"\0" * 100)
    rio.write_text(tmp_path / "last.safetensors", "x")
    assert not dead.exists() and live.exists()
