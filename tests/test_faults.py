"""Nothing silent, nothing lost: one regression test per finding of the bad-input and fault probe
(issue 17).  Every user mistake ends in one line and exit 2 (or correct behaviour); a run
directory is never corrupted by a second process, a kill or a diverging run."""

import json
import os
import pickle
import signal
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from rmpsnn import errors
from rmpsnn.checkpoint import load_model, save_model
from rmpsnn.cli import main
from rmpsnn.conversion import convert
from rmpsnn.data import CIFAR10DVS, load_cifar10, write_aedat
from rmpsnn.data.images import load_image_folder
from rmpsnn.data.resolve import load_static
from rmpsnn.errors import (
    CheckpointError,
    ConfigError,
    ConversionError,
    DataError,
    NonFiniteError,
    RmpsnnError,
)
from rmpsnn.functional import if_multistep, lif_multistep
from rmpsnn.models import create
from rmpsnn.training import load_config, train, train_ann
from rmpsnn.training.rundir import RunLock, read_metrics

from .conftest import write_two_class_folder
from .test_data_cifar import make_cifar10
from .test_data_events import make_dvs, random_events

TINY = [
    "data.dataset=synthetic",
    "data.train_limit=64",
    "data.test_limit=32",
    "optim.batch_size=16",
    "optim.epochs=1",
    "model.kwargs.width=[4,8,8]",
    "run.progress=off",
]


def cli(capsys, *argv):
    """Run the CLI; returns (exit code, stderr lines).  argparse's own errors exit via SystemExit."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err.strip().splitlines()


def assert_one_line(rc, err, *fragments):
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("rmpsnn "), err
    for f in fragments:
        assert f in err[0], err[0]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- 1. class lists
def test_a_class_missing_from_one_split_is_an_error_not_shifted_labels(tmp_path, cache, capsys):
    root = write_two_class_folder(tmp_path / "imgs", size=16, n_train=4, n_test=2)
    extra = root / "train" / "aardvark"  # sorts first: without the check every test label shifts by one
    extra.mkdir()
    for f in (root / "train" / "dark").iterdir():
        extra.joinpath(f.name).write_bytes(f.read_bytes())
    with pytest.raises(
        DataError, match=r"class folders of test/ and train/ differ.*only in train/: aardvark"
    ):
        load_static(str(root), "test")
    # the same in a zip, and from the command line
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in root.rglob("*.png"):
            zf.write(p, p.relative_to(root).as_posix())
    with pytest.raises(DataError, match="only in train/: aardvark"):
        load_image_folder(z, "test", cache=False)
    rc, err = cli(capsys, "train", *TINY, "data.dataset=images", f"data.root={root}", f"run.out={tmp_path}/r")
    assert_one_line(rc, err, "differ")


# ----------------------------------------------------------------------------- 2. finite checkpoints
def test_a_diverged_run_keeps_its_last_finite_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    rc, err = cli(
        capsys, "train", *TINY, "optim.lr=1e30", "run.checkpoint_every=1", "optim.epochs=2", f"run.out={run}"
    )
    assert_one_line(rc, err, "last good checkpoint")
    model, _ = load_model(run / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    # weights that go non-finite while the loss is still finite are caught before the write
    from rmpsnn.training.trainer import Trainer

    trainer = Trainer(load_config(None, [*TINY, f"run.out={tmp_path}/run2"]), log=lambda _: None)
    trainer.prepare_run_dir(resume=False)
    trainer.save_checkpoint()
    good = (tmp_path / "run2" / "last.safetensors").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"became NaN or infinite.*not saved.*last good checkpoint"):
        trainer.save_checkpoint()
    trainer.lock.release()
    assert (tmp_path / "run2" / "last.safetensors").read_bytes() == good


def test_non_finite_weights_are_never_saved(tmp_path, cache, capsys):
    model = create("ann_cpu_net", width=[4, 8, 8])
    model.state_dict()["1.running_var"].fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"not saving .*1\.running_var"):
        save_model(tmp_path / "bad.safetensors", model, model_name="ann_cpu_net", model_kwargs={})
    assert not list(tmp_path.iterdir())
    folder = write_two_class_folder(tmp_path / "imgs", size=16, n_train=8, n_test=2)
    out = tmp_path / "ann.safetensors"
    rc, err = cli(
        capsys, "train-ann", "--data", folder, "--lr", "1e6", "--epochs", "2", "--batch-size", "4",
        "--width", 4, 8, 8, "--out", out, f"run.out={tmp_path / 'run'}",
    )  # fmt: skip
    assert_one_line(rc, err)
    assert "NaN" in err[0] or "infinite" in err[0] or "inf" in err[0]
    assert not out.exists()


# ----------------------------------------------------------------------------- 3. NaN/inf config
@pytest.mark.parametrize("override", ["rmp.k=nan", "optim.lr=inf", "optim.lr=1e39", "optim.lr=.nan"])
def test_non_finite_config_values_are_refused(override):
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, [override])


# ----------------------------------------------------------------------------- 4. locking
def test_a_run_directory_in_use_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(None, [*TINY, f"run.out={run}"], log=lambda _: None)
    metrics = (run / "metrics.jsonl").read_text()
    with RunLock(run):  # another process is writing the run (flock is per open file: this conflicts)
        rc, err = cli(capsys, "train", "--resume", run)
        assert_one_line(rc, err, "in use by pid", "--resume")
        rc, err = cli(capsys, "train", *TINY, f"run.out={run}", "run.overwrite=true")
        assert_one_line(rc, err, "in use by pid")
    assert (run / "metrics.jsonl").read_text() == metrics  # nothing interleaved or deleted


def test_a_killed_holder_releases_the_lock(tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys, time; from rmpsnn.training.rundir import RunLock; "
        f"lock = RunLock({str(run)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(errors.RunLockedError, match=f"pid {p.pid}"):
            RunLock(run).acquire()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        RunLock(run).acquire().release()  # the kernel released it with the process
    finally:
        p.kill()
        p.stdout.close()


# ----------------------------------------------------------------------------- 5. resume / metrics / temps
def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    train(None, [*TINY, f"run.out={run}"], log=lambda _: None)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["epoch"] == 1
    rc, _ = cli(capsys, "train", "--resume", run)
    assert rc == 0
    assert json.loads((run / "summary.json").read_text()) == summary
    assert "already finished" in (run / "log.txt").read_text()
    (run / "summary.json").write_text('{"run_dir": ')  # killed while writing the summary
    assert train(resume=run, log=lambda _: None)["final"] == summary["final"]
    assert json.loads((run / "summary.json").read_text())["final"] == summary["final"]


def test_cut_off_metrics_line_and_stale_temp_files(tmp_path, capsys):
    run = tmp_path / "run"
    train(None, [*TINY, "optim.epochs=2", "run.eval_every=2", f"run.out={run}"], log=lambda _: None)
    # as if killed while writing epoch 2's record and while writing a checkpoint, after epoch 1
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:25])
    stale = run / "last.safetensorsk3j2h1.tmp"
    stale.write_bytes(b"\0" * 1000)
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1]
    (run / "summary.json").unlink()
    from rmpsnn.training.state import load_state, save_state

    state, meta = load_state(run / "last.safetensors")
    state["progress"]["epoch"] = 1  # the checkpoint of the end of epoch 1
    save_state(run / "last.safetensors", state, meta)
    rc, _ = cli(capsys, "train", "--resume", run)
    assert rc == 0 and not stale.exists()
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    (run / "metrics.jsonl").write_text("{broken\n" + (run / "metrics.jsonl").read_text())
    with pytest.raises(CheckpointError, match="line 1: not a JSON record"):
        read_metrics(run / "metrics.jsonl")


# ----------------------------------------------------------------------------- 6. one line, exit 2
def test_every_error_class_shares_one_base_and_the_cli_catches_subclasses(capsys, monkeypatch):
    for cls in (ConfigError, DataError, CheckpointError, ConversionError, NonFiniteError):
        assert issubclass(cls, RmpsnnError)

    class MyDataError(DataError):
        pass

    def boom(args):
        raise MyDataError("a subclass says what went wrong")

    import rmpsnn.cli as cli_mod

    monkeypatch.setitem(cli_mod.RUN, "report", boom)
    rc, err = cli(capsys, "report", "x")
    assert_one_line(rc, err, "a subclass says what went wrong")


def _bad_checkpoints(tmp_path):
    from safetensors.torch import save_file

    model = create("cpu_net", width=[4, 8, 8], num_classes=4, image_size=16)
    ok = tmp_path / "ok.safetensors"
    kwargs = {"width": [4, 8, 8], "num_classes": 4, "image_size": 16}
    save_model(ok, model, model_name="cpu_net", model_kwargs=kwargs)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    bad_json = tmp_path / "badmeta.safetensors"
    save_file(state, bad_json, metadata={"model": "cpu_net", "kwargs": "{width: [4", "info": "{}"})
    shape = tmp_path / "shape.safetensors"  # saved as width [4, 8, 8], claims [4, 8, 16]
    save_file(
        state, shape, metadata={"model": "cpu_net", "kwargs": json.dumps({**kwargs, "width": [4, 8, 16]})}
    )
    return ok, bad_json, shape


def test_user_mistakes_end_in_one_line(tmp_path, cache, capsys):
    out = f"run.out={tmp_path}/r"
    cases = [
        (["train", *TINY, out, "model.kwargs.num_classes=5"], "num_classes=5"),
        (["train", *TINY, out, "model.kwargs.width=[0,0,0]"], "positive integers"),
        (["train", *TINY, "data.train_limit=0", out], "data.train_limit must be >= 1"),
        (["train", *TINY, "data.train_limit=-5", out], "data.train_limit must be >= 1"),
    ]
    (tmp_path / "afile").write_text("x")
    cases.append((["train", *TINY, f"run.out={tmp_path}/afile"], "is a file"))
    ok, bad_json, shape = _bad_checkpoints(tmp_path)
    cases += [
        (["evaluate", "--checkpoint", bad_json], "not valid JSON"),
        (["evaluate", "--checkpoint", shape], "does not match model"),
        (["convert", "--ann", ok], "spiking model 'cpu_net'"),
    ]
    bad_nir = tmp_path / "bad.nir"
    bad_nir.write_bytes(b"not hdf5")
    for argv, fragment in cases:
        rc, err = cli(capsys, *argv)
        assert_one_line(rc, err, fragment)
    from rmpsnn.errors import NIRExportError
    from rmpsnn.export import from_nir

    with pytest.raises(NIRExportError, match=r"bad\.nir: not a readable NIR file"):
        from_nir(bad_nir)


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "--ann", "a.safetensors", "--balance-timesteps", "0"],
        ["convert", "--ann", "a.safetensors", "--calib", "0"],
        ["train-ann", "--epochs", "0"],
        ["train-ann", "--lr", "nan"],
        ["evaluate", "--checkpoint", "r", "--timesteps", "0"],
    ],
)
def test_zero_or_non_finite_options_are_refused_before_any_work(argv, capsys):
    rc, err = cli(capsys, *argv)
    assert rc == 2 and err[-1].startswith(f"rmpsnn {argv[0]}: error: argument")
    assert "must be" in err[-1]


def test_out_of_range_labels_and_extra_dvs_classes_are_data_errors(tmp_path):
    base = make_cifar10(tmp_path / "c10")
    path = base / "test_batch"
    d = pickle.loads(path.read_bytes(), encoding="bytes")
    d[b"labels"][0] = 12
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError, match=r"label 12 is outside 0\.\.9"):
        load_cifar10(tmp_path / "c10", "test")
    root = make_dvs(tmp_path / "dvs", per_class=3)
    (root / "unicorn").mkdir()
    with pytest.raises(DataError, match=r"unexpected folder.*unicorn"):
        CIFAR10DVS(root, "train", cache=False)


# ----------------------------------------------------------------------------- 7. data errors
def test_corrupt_test_image_is_named_not_reported_as_a_missing_val_split(tmp_path, cache):
    root = write_two_class_folder(tmp_path / "imgs", size=16, n_train=2, n_test=2)
    (root / "test" / "light" / "1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"test/light/1\.png: cannot decode image") as e:
        load_static(str(root), "test")
    assert "val" not in str(e.value)


def test_dvs_small_classes_downloads_folder_and_cache_freshness(tmp_path):
    root = make_dvs(tmp_path / "dvs", per_class=3)
    (root / "downloads").mkdir()  # where download() keeps the class zips: never a class
    (root / "downloads" / "airplane.zip").write_bytes(b"zip")
    train_set, test_set = (CIFAR10DVS(root, s, cache_root=tmp_path / "c") for s in ("train", "test"))
    assert len(train_set) == 4 and len(test_set) == 2  # 3 files per class: 2 train, 1 test
    assert len(train_set.classes) == 10 and sorted(set(test_set.labels.tolist())) == [0, 1]
    one = make_dvs(tmp_path / "one", per_class=1, classes=("cat",))
    with pytest.raises(DataError, match=r"holds 1 \.aedat file.*at least 2"):
        CIFAR10DVS(one, "train", cache=False)
    # an edit that keeps the file size must not be served from the cache
    f = test_set.files[0]
    before = test_set[0][0]
    ev = random_events(200, seed=999)  # same event count as the file (200 events), other events
    write_aedat(f, ev)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not torch.equal(CIFAR10DVS(root, "test", cache_root=tmp_path / "c")[0][0], before)


# ----------------------------------------------------------------------------- 8. converter holes
class _Body(nn.Module):
    def __init__(self, tail):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.tail = tail

    def forward(self, x):
        return self.tail(torch.relu(self.conv(x)))


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (lambda h: 1.0 / (h + 1), "truediv"),
        (lambda h: h * h, "mul"),
        (lambda h: h.mean(0), "reduces over dim 0"),
        (lambda h: torch.cat([h, h], 0), "joins along dim 0"),
        (lambda h: h.view(-1), "does not keep dim 0"),
        (lambda h: h.flatten(), "starts at dim 0"),
        (lambda h: h[0], "selects along dim 0"),
        (lambda h: h.transpose(0, 1), "moves dim 0"),
    ],
)
def test_non_linear_or_time_mixing_ops_are_refused(tail, message):
    with pytest.raises(ConversionError, match=message):
        convert(_Body(tail), balance="none")


def test_batch_preserving_ops_still_convert():
    ann = _Body(lambda h: torch.cat([h.view(h.size(0), -1), 2 * h.flatten(1) / 4], 1))
    x = torch.rand(8, 3, 6, 6)
    snn = convert(ann, x, calibrate="none", balance="act-max")
    assert snn(x, 4)[-1].shape == ann(x).shape


def test_maxpool_ceil_mode_converts_and_dilation_is_refused():
    ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten())
    x = torch.rand(4, 3, 7, 7)  # 5x5 -> 3x3 only with ceil_mode
    snn = convert(ann, x, calibrate="none", balance="act-max")  # spiking max pooling, the default
    assert snn(x, 2)[-1].shape == ann(x).shape == (4, 36)
    with pytest.warns(UserWarning, match="replaced by average pooling"):
        avg = convert(ann, x, calibrate="none", balance="act-max", maxpool="avg")
    assert avg(x, 2)[-1].shape == (4, 36)
    dilated = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2), nn.Flatten())
    spiking = convert(dilated, x, calibrate="none", balance="act-max")  # a spiking max pool keeps dilation
    assert spiking(x, 2)[-1].shape == dilated(x).shape
    with pytest.raises(ConversionError, match="dilation"):  # average pooling has none
        convert(dilated, x, maxpool="avg")


@pytest.mark.parametrize("data", [torch.full((4, 3, 6, 6), float("nan")), torch.empty(0, 3, 6, 6), []])
def test_nan_or_empty_calibration_data(data):
    with pytest.raises(errors.InputError, match=r"NaN|empty"):
        convert(_Body(nn.Flatten()), data)


# ----------------------------------------------------------------------------- 9. kernels
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("fn", [lif_multistep, if_multistep])
def test_both_backends_refuse_non_finite_input(fn, backend, bad):
    x = torch.rand(3, 2, 5)
    x[1, 0, 2] = bad
    with pytest.raises(NonFiniteError, match="1 NaN or infinite value"):
        fn(x, backend=backend)
    with pytest.raises(NonFiniteError):
        fn(x.requires_grad_(), backend=backend)
    big = torch.full((2, 4), 1e38)  # a finite input whose sum overflows but no potential can: accepted
    assert torch.equal(fn(big, backend="cpu"), fn(big, backend="torch"))
    huge = torch.full((2, 4), 3e38)  # 2 steps of 3e38 can overflow float32 (IF): both refuse, by name
    for b in ("cpu", "torch"):
        with pytest.raises(NonFiniteError, match="overflow"):
            fn(huge, backend=b)


# ----------------------------------------------------------------------------- 10. odd values
def test_one_class_training_data_is_refused(tmp_path, cache):
    root = write_two_class_folder(tmp_path / "imgs", size=16, n_train=4, n_test=2)
    for split in ("train", "test"):
        for f in (root / split / "light").iterdir():
            f.unlink()
        (root / split / "light").rmdir()
    with pytest.raises(DataError, match=r"1 class\(es\) \(dark\).*at least 2 classes"):
        train_ann("ann_cpu_net", data=str(root), epochs=1, batch_size=2, model_kwargs={"width": (4, 8, 8)})
    # train_ann's keywords are validated by the config they fill; the errors name the keyword
    for kwargs, message in [
        ({"epochs": 0}, "^epochs must be >= 1, got 0"),
        ({"lr": float("nan")}, "^lr must be a finite number"),
        ({"train_limit": 0}, "^train_limit must be >= 1"),
        ({"time_budget_s": -5}, "^time_budget_s must be a positive number of seconds"),
    ]:
        with pytest.raises(errors.InputError, match=message):
            train_ann("ann_cpu_net", data=str(root), **kwargs)
