"""The data registry: one loader builder for every command, and a new data set in one place."""

import json

import numpy as np
import pytest
import torch

from rmpsnn.checkpoint import load_model
from rmpsnn.cli import main
from rmpsnn.data import (
    DataConfig,
    ImageArrays,
    LoaderContext,
    available_datasets,
    build_data,
    image_arrays,
    register_dataset,
)
from rmpsnn.data.config import DATASETS
from rmpsnn.errors import ConfigError, InputError
from rmpsnn.training import ann_config, load_config, train, train_ann

from .conftest import write_two_class_folder


@pytest.fixture
def stripes():
    """A user data set registered for the test (and removed after it)."""

    @register_dataset("test-stripes", images=True)
    def _stripes(cfg, split, seed):
        rng = np.random.default_rng([seed, split == "test"])
        n = 40 if split == "train" else 12
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, 1, 12, 12)).astype(np.uint8)
        images[labels == 1, :, ::2] += 150  # class 1: bright horizontal stripes
        return ImageArrays(images, labels.astype(np.int64), ["plain", "striped"])

    yield "test-stripes"
    DATASETS.unregister("test-stripes")


def test_builtin_data_sets_are_registered():
    assert {"cifar10", "cifar100", "images", "digits", "synthetic", "cifar10-dvs", "emulated-dvs"} <= set(
        available_datasets()
    )
    with pytest.raises(ConfigError, match=r"data\.dataset = 'mnist' is not a registered data set; allowed"):
        load_config(None, ["data.dataset=mnist"])
    with pytest.raises(InputError, match="data set 'cifar10' is already registered"):
        register_dataset("cifar10")(lambda cfg, ctx: None)
    # each set declares what it yields; nothing is inferred from a shape
    assert DataConfig(dataset="emulated-dvs").input == "events" and DataConfig().input == "images"


def test_a_registered_image_set_builds_one_bundle(stripes):
    cfg = DataConfig(dataset=stripes, train_limit=20)
    bundle = build_data(cfg, LoaderContext(batch_size=8, seed=3))
    assert bundle.num_classes == 2 and bundle.input_shape == (1, 12, 12) and not bundle.time_major
    assert bundle.info == {
        "train_images": 20,
        "test_images": 12,
        "input_shape": [1, 12, 12],
        "time_major": False,
    }
    x, y = next(iter(bundle.train))
    assert x.shape == (8, 1, 12, 12) and x.dtype == torch.float32 and y.shape == (8,)
    # normalised with the training subset's statistics: about zero mean, unit spread
    xs = torch.cat([b for b, _ in bundle.test()])
    assert xs.shape == (12, 1, 12, 12) and abs(xs.mean().item()) < 0.5
    assert len(image_arrays(cfg, "train", seed=3)) == 40  # the arrays, without the limit
    # sharding: two processes evaluate disjoint halves of the test split
    shards = [build_data(cfg, LoaderContext(batch_size=4, rank=r, world_size=2)).test() for r in (0, 1)]
    a, b = (torch.cat([x for x, _ in s]).flatten(1) for s in shards)
    assert len(a) == len(b) == 6 and not (a[:, None] == b[None]).all(-1).any()


def test_a_registered_set_trains_an_snn_and_an_ann_and_exports(stripes, tmp_path, capsys):
    common = [f"data.dataset={stripes}", "optim.epochs=1", "optim.batch_size=8", "model.kwargs.width=[4,4,4]"]
    summary = train(None, [*common, "model.timesteps=2", f"run.out={tmp_path / 'snn'}"], log=lambda _: None)
    assert summary["epochs_done"] == 1 and 0 <= summary["final"]["test_accuracy"] <= 1
    # the ANN goes through the same trainer (rmp off) and records the input shape export needs
    cfg = ann_config(None, [*common, f"run.out={tmp_path / 'ann'}"])
    assert cfg.rmp.enabled is False and cfg.optim.nesterov and cfg.optim.warmup_epochs == pytest.approx(0.1)
    rc = main(
        ["train-ann", *common, f"run.out={tmp_path / 'ann'}", "--out", str(tmp_path / "ann.safetensors")]
    )
    assert rc == 0
    _, info = load_model(tmp_path / "ann.safetensors")
    assert info["kwargs"]["in_channels"] == 1 and info["kwargs"]["image_size"] == 12
    assert info["data"]["input_shape"] == [1, 12, 12] and len(info["mean"]) == 1
    capsys.readouterr()
    # export reads the shape from the run, not from a guess (a 1-channel 12x12 input here)
    assert main(["export", "--checkpoint", str(tmp_path / "snn"), "--out", str(tmp_path / "m.nir")]) == 0
    assert "input [1, 12, 12]" in capsys.readouterr().out


def test_data_specs_map_to_registered_sets(tmp_path):
    assert (DataConfig.from_spec("shared").dataset, DataConfig.from_spec(None).root) == ("cifar10", "shared")
    assert DataConfig.from_spec("digits").dataset == "digits"
    (tmp_path / "c10" / "cifar-10-batches-py").mkdir(parents=True)
    assert DataConfig.from_spec(str(tmp_path / "c10")) == DataConfig(
        dataset="cifar10", root=str(tmp_path / "c10")
    )
    spec = DataConfig.from_spec(str(tmp_path / "c10" / "cifar-10-batches-py"))
    assert (spec.dataset, spec.root) == ("cifar10", str(tmp_path / "c10"))
    assert DataConfig.from_spec(str(tmp_path / "folder"), test_limit=5).dataset == "images"
    with pytest.raises(ConfigError, match="is not a set of static images"):
        image_arrays(DataConfig(dataset="cifar10-dvs"), "train")


def test_train_ann_runs_are_resumable_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    folder = write_two_class_folder(tmp_path / "imgs", size=16, n_train=16, n_test=4)
    run = tmp_path / "run"
    args = ["--data", str(folder), "--batch-size", "8", "--width", "4", "4", "4", f"run.out={run}"]
    assert main(["train-ann", *args, "--epochs", "2", "--out", str(tmp_path / "a.safetensors")]) == 0
    # a finished run resumes to nothing; the same command again refuses to overwrite it
    assert main(["train-ann", "--resume", str(run), "--out", str(tmp_path / "b.safetensors")]) == 0
    assert "already finished its 2 epochs" in capsys.readouterr().out
    assert main(["train-ann", *args, "--epochs", "2"]) == 2
    assert "train-ann --resume" in capsys.readouterr().err
    a, _ = load_model(tmp_path / "a.safetensors")
    b, _ = load_model(tmp_path / "b.safetensors")
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_train_ann_keyword_api_leaves_no_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    folder = write_two_class_folder(tmp_path / "imgs", size=16, n_train=16, n_test=4)
    model, info = train_ann(
        data=str(folder), epochs=2, batch_size=8, model_kwargs={"width": (4, 4, 4)}, log=lambda _: None
    )
    assert [h["epoch"] for h in info["history"]] == [1, 2] and info["test_accuracy"] is not None
    assert not model.training and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "imgs"]


def test_a_data_set_declares_its_own_options():
    # the event sets' frame size is their option, not a key of every data set
    cfg = load_config(None, ["data.dataset=emulated-dvs", "data.options.size=16"])
    assert cfg.data.options == {"size": 16} and "event_size" not in vars(cfg.data)
    for overrides, message in (
        (["data.dataset=emulated-dvs", "data.options.size=4"], r"data\.options\.size must be >= 8, got 4"),
        (["data.dataset=emulated-dvs", "data.options.sise=16"], "has no option sise; its options: size"),
        (["data.dataset=cifar10", "data.options.size=16"], "'cifar10' takes no data.options"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)
