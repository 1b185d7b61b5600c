"""`rmpsnn convert --model path/to/file.py:Name --ann weights`: a user's own model class from the CLI."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from rmpsnn.cli import main

from .conftest import write_two_class_folder

MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=4, num_classes=2):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(width * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))


def make_net(width=4):
    return Net(width=width)
"""


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("user_model")
    (tmp / "my_model.py").write_text(MODEL_FILE)
    folder = write_two_class_folder(tmp / "imgs", size=16, n_train=16, n_test=6)
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    torch.manual_seed(0)
    net = namespace["Net"](width=4)
    state = net.state_dict()
    torch.save(state, tmp / "w.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "w.safetensors"))
    return tmp, folder


def _convert(tmp, folder, *extra):
    out = tmp / "c.json"
    common = ["--data", str(folder), "--reset", "soft", "--timesteps", "4", "--calib", "8"]
    return main(["convert", *common, "--out", str(out), *extra]), out


@pytest.mark.parametrize("weights", ["w.pt", "w.safetensors"])
def test_convert_a_user_model_class_from_a_file(user_files, weights):
    tmp, folder = user_files
    rc, out = _convert(tmp, folder, "--model", f"{tmp / 'my_model.py'}:Net", "--ann", str(tmp / weights))
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["model"].endswith("my_model.py:Net") and res["timesteps"] == [1, 2, 4]
    assert len(res["variants"]["soft reset"]["accuracy"]) == 3


def test_convert_a_user_factory_with_kwargs_and_given_normalisation(user_files):
    tmp, folder = user_files
    rc, out = _convert(
        tmp,
        folder,
        "--model",
        f"{tmp / 'my_model.py'}:make_net",
        "--ann",
        str(tmp / "w.pt"),
        "ann.kwargs.width=4",
        "ann.mean=0.5,0.5,0.5",
        "ann.std=0.25,0.25,0.25",
        "ann.input_shape=3,16,16",
    )
    assert rc == 0 and json.loads(out.read_text())["variants"]


def test_user_model_errors_are_one_line_exit_2(user_files, capsys):
    tmp, folder = user_files
    spec = f"{tmp / 'my_model.py'}"
    w = str(tmp / "w.pt")
    wrong = {k: v for k, v in torch.load(tmp / "w.pt").items() if k != "fc.bias"}
    wrong["extra.weight"] = torch.zeros(1)
    torch.save(wrong, tmp / "wrong.pt")
    with open(tmp / "pickled.pt", "wb") as f:  # a pickled object, not a plain state dict
        pickle.dump({"model": object()}, f)
    torch.save({"state_dict": [1, 2]}, tmp / "listy.pt")
    cases = [
        (["--model", f"{spec}:Nope", "--ann", w], r"defines no 'Nope'; it defines Net, make_net"),
        (["--model", f"{tmp / 'missing.py'}:Net", "--ann", w], "does not exist"),
        (["--model", f"{spec}:Net", "--ann", str(tmp / "wrong.pt")], "missing: fc.bias; unexpected: extra"),
        (["--model", f"{spec}:Net", "--ann", str(tmp / "pickled.pt")], "not a plain state dict"),
        (["--model", f"{spec}:Net", "--ann", str(tmp / "listy.pt")], "not a plain state dict"),
        (["--model", f"{spec}:Net", "--ann", w, "ann.input_shape=3,32,32"], "are 3,16,16"),
        (["--model", f"{spec}:Net", "--ann", w, "conversion.v_init=nan"], "finite fraction"),
        (["--model", f"{spec}:Net", "--ann", w, "ann.kwargs.bogus=1"], r"calling Net\(bogus=1\) failed"),
    ]
    for args, message in cases:
        capsys.readouterr()
        rc, _ = _convert(tmp, folder, *args)
        err = capsys.readouterr().err.strip()
        assert rc == 2, (args, err)
        assert len(err.splitlines()) == 1 and __import__("re").search(message, err), (args, err)


def test_a_state_dict_saved_from_ddp_loads_without_its_module_prefix(user_files):
    """DDP/DataParallel save ``module.``-prefixed keys; the prefix is dropped (as timm does)."""
    tmp, folder = user_files
    state = torch.load(tmp / "w.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp / "ddp.pt")
    rc, out = _convert(tmp, folder, "--model", f"{tmp / 'my_model.py'}:Net", "--ann", str(tmp / "ddp.pt"))
    assert rc == 0 and json.loads(out.read_text())["variants"]
