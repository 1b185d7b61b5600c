"""train-ann / convert end to end on a tiny image folder, checkpoints, and the model registry."""

import json

import pytest
import torch

from rmpsnn.checkpoint import load_model, save_model
from rmpsnn.cli import main
from rmpsnn.errors import CheckpointError
from rmpsnn.models import create, list_models
from rmpsnn.training import train_ann

from .conftest import write_two_class_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_two_class_folder(tmp_path_factory.mktemp("tiny"))


def test_train_ann_then_convert_from_the_cli(tiny_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "ann.safetensors"
    rc = main(
        [
            "train-ann",
            "--data",
            str(tiny_folder),
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "0.05",
            "--width",
            "4",
            "8",
            "8",
            "--out",
            str(ckpt),
            f"run.out={tmp_path / 'ann-run'}",
        ]
    )
    assert rc == 0 and ckpt.exists()
    _, info = load_model(ckpt)
    assert info["model"] == "ann_cpu_net" and info["kwargs"]["width"] == [4, 8, 8] and len(info["mean"]) == 3
    # the one trainer ran it: a run directory with per-epoch metrics and the input shape for export
    metrics = [json.loads(line) for line in (tmp_path / "ann-run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and metrics[-1]["quantization_error"] is None
    assert info["config"]["optim"]["epochs"] == 3 and info["config"]["rmp"]["enabled"] is False
    assert load_model(tmp_path / "ann-run" / "best.safetensors")[1]["data"]["input_shape"] == [3, 32, 32]
    out = tmp_path / "conv.json"
    rc = main(
        [
            "convert",
            "--ann",
            str(ckpt),
            "--data",
            str(tiny_folder),
            "--reset",
            "both",
            "--timesteps",
            "64",
            "--calib",
            "16",
            "--balance",
            "act-max",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["timesteps"] == [1, 2, 4, 8, 16, 32, 64]
    assert set(res["variants"]) == {"soft reset", "hard reset"}
    soft = res["variants"]["soft reset"]
    assert len(soft["accuracy"]) == 7 and set(soft["thresholds"]) == {"if_0", "if_1", "if_2"}
    assert soft["accuracy"][-1] >= res["ann_accuracy"] - 0.15  # a 2-class toy: close to the ANN at T=64
    printed = capsys.readouterr().out
    assert "soft reset:" in printed and "hard reset:" in printed
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000  # the plot
    assert out.with_suffix(".svg").exists()


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    assert main(["convert", "--ann", str(tmp_path / "missing.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train-ann", "--data", str(tmp_path / "nowhere"), "--epochs", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_nan_loss_stops_with_a_clear_message(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        FloatingPointError,
        match=r"loss became .* at epoch 1, step \d+ \(global step \d+\)\. Start a new run with a lower",
    ):
        train_ann(
            "ann_cpu_net",
            data=str(tiny_folder),
            epochs=1,
            batch_size=8,
            lr=1e12,
            model_kwargs={"width": (4, 4, 4)},
            log=lambda s: None,
        )


def test_direct_training_on_an_image_folder_with_and_without_rmp_loss(tiny_folder, tmp_path, monkeypatch):
    import json

    from rmpsnn.training import train

    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    common = [
        "data.dataset=images",
        f"data.root={tiny_folder}",
        "model.timesteps=2",
        "optim.batch_size=8",
        "optim.lr=0.05",
        "model.kwargs.width=[4,8,8]",
        "model.readout=mean",
        "run.progress=off",
    ]
    logs = []
    s = train(None, [*common, "optim.epochs=4", f"run.out={tmp_path / 'rmp'}"], log=logs.append)
    h = [json.loads(x) for x in (tmp_path / "rmp" / "metrics.jsonl").read_text().splitlines()]
    assert len(h) == 4 and sum(x.startswith("epoch") for x in logs) == 4
    assert h[-1]["ce"] < h[0]["ce"]  # it learns the two-class toy task
    assert all(r["rmp"] > 0 for r in h)
    assert 0 < s["final"]["quantization_error"] < 1 and len(s["per_layer_quantization_error"]) == 3
    train(
        None,
        [*common, "optim.epochs=1", "rmp.enabled=false", f"run.out={tmp_path / 'plain'}"],
        log=logs.append,
    )
    plain = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text())
    assert plain["rmp"] == 0.0 and plain["lambda"] == 0.0


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = create("ann_cpu_net", width=(4, 4, 4))
    path = save_model(
        tmp_path / "m.safetensors",
        model,
        model_name="ann_cpu_net",
        model_kwargs={"width": (4, 4, 4)},
        note="x",
    )
    loaded, info = load_model(path)
    assert info["note"] == "x"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file and renamed
    raw = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_model(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="does not match model"):
        load_model(path, model_name="ann_resnet20")


def test_registry():
    assert {"ann_cpu_net", "ann_vgg16", "ann_resnet20", "ann_resnet34"} <= set(list_models("ann"))
    with pytest.raises(
        ValueError, match=r"unknown model 'resnet9'; did you mean 'resnet19'\? Valid names: ann_cpu_net"
    ):
        create("resnet9")
    with pytest.raises(ValueError, match="unknown activation"):
        create("ann_cpu_net", activation="gelu")
    x = torch.randn(2, 3, 32, 32)
    for name in ("ann_cpu_net", "ann_vgg16", "ann_resnet20"):
        for act in ("relu", "qcfs"):
            m = create(name, activation=act, **({"hidden": 16} if name == "ann_vgg16" else {}))
            out = m(x)
            out.sum().backward()
            assert out.shape == (2, 10)
    assert create("ann_resnet34", num_classes=5)(torch.randn(1, 3, 64, 64)).shape == (1, 5)
