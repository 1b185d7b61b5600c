"""The one-GPU reproduction scripts (benchmarks/reproduce/) run end to end in --smoke mode on CPU:
the same code as on the GPU, on a few hundred CIFAR-10 images, so a lease is never spent on a crash."""

import importlib.util
import json
import pathlib

import pytest

from rmpsnn.data import shared_cifar10_zip

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce"

pytestmark = pytest.mark.skipif(shared_cifar10_zip() is None, reason="needs ../shared/data/cifar10-jpeg.zip")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["conversion_vgg16", "conversion_resnet20"])
def test_conversion_scripts_smoke(name, tmp_path):
    summary = _script(name).main(["--smoke", "--out", str(tmp_path)])
    assert summary["smoke"] and summary["ann"]["epochs"] >= 1
    assert summary["timesteps"] == [1, 2, 4, 8]
    assert len(summary["variants"]) == 4
    for v in summary["variants"].values():
        assert len(v["accuracy"]) == 4 and all(0 <= a <= 1 for a in v["accuracy"])
    files = {p.name for p in tmp_path.iterdir()}
    assert {"summary.json", "conversion.json", "conversion.png", "table.md", "log.txt"} <= files
    assert json.loads((tmp_path / "summary.json").read_text())["paper"]["ann_accuracy"] > 0.9


def test_rmploss_script_smoke(tmp_path):
    summary = _script("rmploss_resnet19").main(["--smoke", "--out", str(tmp_path)])
    assert set(summary["arms"]) == {"without-rmp-loss", "with-rmp-loss"}
    for arm in summary["arms"].values():
        assert arm["epochs_done"] == 1 and 0 <= arm["test_accuracy"] <= 1 and arm["quantization_error"] > 0
    assert (tmp_path / "table.md").read_text().count("rmp-loss") == 2
