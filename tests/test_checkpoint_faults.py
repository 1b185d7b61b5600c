"""Checkpoints and evaluations that would give a silent wrong number or a traceback (issue 26):
models scored on data they cannot score, crafted or damaged checkpoints, crafted training
progress.  Each is one line naming what is wrong (exit 2 from the CLI)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rmpsnn.checkpoint import load_model, save_model
from rmpsnn.conversion import convert, evaluate_over_time
from rmpsnn.errors import CheckpointError, DataError
from rmpsnn.evaluation import top1
from rmpsnn.models import create
from rmpsnn.training import train
from rmpsnn.training.state import load_state, save_state

from .conftest import write_two_class_folder
from .test_faults import TINY, assert_one_line, cli


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    folder = write_two_class_folder(root / "imgs", size=8, n_train=8, n_test=4)
    run = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("RMPSNN_CACHE", str(root / "cache"))
    train(
        None, [*TINY[1:], "data.dataset=images", f"data.root={folder}", f"run.out={run}"], log=lambda _: None
    )
    yield run, root
    mp.undo()


def test_a_model_is_not_scored_on_data_with_other_classes_or_image_sizes(two_class_run, capsys, monkeypatch):
    run, root = two_class_run
    monkeypatch.setenv("RMPSNN_CACHE", str(root / "cache"))
    rc, err = cli(capsys, "evaluate", "--checkpoint", run, "--data", "dataset=synthetic")
    assert_one_line(rc, err, "scores 2 classes but data set 'synthetic' has 4")
    big = write_two_class_folder(root / "big", size=12, n_train=2, n_test=2)
    rc, err = cli(capsys, "evaluate", "--checkpoint", run, "--data", f"root={big}")
    assert_one_line(rc, err, "trained on images of shape [3, 8, 8]", "[3, 12, 12]")


def test_labels_the_model_cannot_predict_and_empty_data_are_errors():
    model = torch.nn.Linear(4, 2)
    x = torch.rand(3, 4)
    with pytest.raises(DataError, match="labels run from 0 to 2, but the model has 2 outputs"):
        top1(model, [(x, torch.tensor([0, 1, 2]))])
    with pytest.raises(DataError, match="must be class indices"):
        top1(model, [(x, torch.tensor([0.0, 1.0, 1.0]))])
    ann = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).eval()
    snn = convert(ann, x, calibrate="none")
    with pytest.raises(DataError, match="labels run from -1"):
        evaluate_over_time(snn, (x, torch.tensor([0, -1, 1])), timesteps=[1, 2])
    with pytest.raises(DataError, match="holds no images"):
        evaluate_over_time(snn, [], timesteps=[1, 2])


def _saved(tmp_path, **kw):
    model = create("ann_cpu_net", width=[4, 8, 8])
    path = tmp_path / "m.safetensors"
    save_model(path, model, model_name="ann_cpu_net", model_kwargs={"width": [4, 8, 8], **kw})
    return path


def _rewrite(path, tensors=None, **meta):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        old_meta = f.metadata()
    save_file(
        tensors if tensors is not None else load_file(str(path)), str(path), metadata={**old_meta, **meta}
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.bool(), "stored as torch.bool"),
        (lambda t: t.to(torch.int8), "stored as torch.int8"),
        (lambda t: t.fill_(float("nan")), "NaN or infinite values"),
    ],
)
def test_weights_of_the_wrong_kind_are_named(tmp_path, damage, message):
    path = _saved(tmp_path)
    tensors = load_file(str(path))
    tensors = {k: (damage(v.clone()) if v.is_floating_point() else v) for k, v in tensors.items()}
    _rewrite(path, tensors)
    with pytest.raises(CheckpointError, match=message) as e:
        load_model(path)
    assert "diverged" not in str(e.value) and "v_th must be" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": [4, 8, 8], "num_classes": 10**12},
        {"width": [10**6, 10**6, 10**6]},
        {"width": [4, 8, 8], "bogus": 1},
        {"width": "x"},
    ],
)
def test_crafted_model_arguments_are_refused_without_allocating(tmp_path, capsys, kwargs):
    path = _saved(tmp_path)
    _rewrite(path, kwargs=json.dumps(kwargs))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    rc, err = cli(capsys, "export", "--checkpoint", path, "--format", "safetensors", "--out", tmp_path / "x")
    assert_one_line(rc, err, str(path))


CRAFTED = {
    "epoch -5": lambda s: s["progress"].update(epoch=-5),
    "epoch past the end": lambda s: s["progress"].update(epoch=99),
    "step 1e9": lambda s: s["progress"].update(step=10**9),
    "float step": lambda s: s["progress"].update(step=1.5),
    "string epoch": lambda s: s["progress"].update(epoch="1"),
    "best accuracy 7": lambda s: s["progress"].update(best_accuracy=7.0),
    "negative elapsed": lambda s: s["progress"].update(elapsed=-1.0),
    "no progress": lambda s: s.pop("progress"),
    "no rng": lambda s: s.pop("rng"),
    "float rng": lambda s: s["rng"].update(torch=s["rng"]["torch"].float()),
    "short rng": lambda s: s["rng"].update(torch=s["rng"]["torch"][:10]),
    "python rng": lambda s: s["rng"].update(python=[1, 2, 3]),
    "nan partial": lambda s: s["partial"].fill_(float("nan")),
    "partial shape": lambda s: s.update(partial=torch.zeros(2)),
    "optimizer": lambda s: s.update(optimizer={"state": 3}),
    "model": lambda s: s.update(model={"x": torch.zeros(1)}),
}


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("crafted") / "run"
    train(None, [*TINY, "optim.epochs=2", f"run.out={run}"], log=lambda _: None)
    return run


@pytest.mark.parametrize("craft", list(CRAFTED))
def test_crafted_training_progress_is_refused_on_resume(spiking_run, tmp_path, capsys, craft):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(spiking_run, run)
    (run / "summary.json").unlink()
    state, meta = load_state(run / "last.safetensors")
    state["progress"]["epoch"] = 1
    CRAFTED[craft](state)
    save_state(run / "last.safetensors", state, meta)
    rc, err = cli(capsys, "train", "--resume", run)
    assert_one_line(rc, err, "last.safetensors")


def test_a_damaged_state_structure_is_one_line(tmp_path):
    path = tmp_path / "last.safetensors"
    save_state(path, {"a": torch.zeros(1)})
    tensors = load_file(str(path))
    for tree in (
        "[" * 5000 + "0" + "]" * 5000,
        json.dumps({"__tensor__": "missing"}),
        json.dumps({"__dict__": 3}),
    ):
        save_file(tensors, str(path), metadata={"tree": tree})
        with pytest.raises(CheckpointError, match=r"damaged|not a readable"):
            load_state(path)


def test_convert_refuses_data_of_another_image_size_or_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    big = write_two_class_folder(tmp_path / "big", size=12, n_train=2, n_test=2)
    ann = tmp_path / "ann.safetensors"  # as train-ann writes it for 8x8 images of 2 classes
    kwargs = {"width": [4, 8, 8], "num_classes": 2, "image_size": 8}
    save_model(
        ann, create("ann_cpu_net", **kwargs), model_name="ann_cpu_net", model_kwargs=kwargs,
        mean=[0.5] * 3, std=[0.2] * 3, data={"input_shape": [3, 8, 8]},
    )  # fmt: skip
    rc, err = cli(capsys, "convert", "--ann", ann, "--data", big, "--timesteps", 4, "--out", tmp_path / "c")
    assert_one_line(rc, err, "trained on images of shape [3, 8, 8]", "[3, 12, 12]")
    rc, err = cli(
        capsys, "convert", "--ann", ann, "--data", "synthetic", "--timesteps", 4, "--out", tmp_path / "c"
    )
    assert_one_line(rc, err, "scores 2 classes")
