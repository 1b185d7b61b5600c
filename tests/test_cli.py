import argparse
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import rmpsnn
from rmpsnn.cli import main
from rmpsnn.errors import InputError


def test_version_and_help(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert rmpsnn.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_runs_and_learns(capsys):
    assert main(["demo", "--steps", "30", "--batch", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "soft reset (RMP)" in out and "step  29" in out
    ce = [float(v) for v in re.findall(r"CE (\d+\.\d+)", out)]
    assert len(ce) >= 3 and ce[-1] < ce[0]  # the spiking CNN learns the toy task


def test_console_entry_point_and_module():
    r = subprocess.run(
        [sys.executable, "-m", "rmpsnn", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == f"rmpsnn {rmpsnn.__version__}"


def test_version_matches_pyproject():
    root = pathlib.Path(__file__).resolve().parents[1]
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M).group(1)
    assert version == rmpsnn.__version__


COMMANDS = [
    ["train-ann"],
    ["demo"],
    ["quickstart"],
    ["convert", "--ann", "a.safetensors"],
    ["evaluate", "--checkpoint", "run"],
    ["report", "run"],
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("device", ["cuda", "gpu", "mps", "cuda:3"])
def test_device_mistakes_are_one_line_naming_the_option(command, device, capsys):
    assert main([*command, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rmpsnn {command[0]}: error: --device={device!r}"), err
    assert "available" in err[0] and "cpu" in err[0]


def test_device_is_checked_by_the_library_and_named_as_typed(tmp_path, capsys):
    """The library's entry points resolve the device once (Python users get the key in the
    error); the command only renames the key to the flag the user typed."""
    from rmpsnn.app.checkpoints import evaluate_checkpoint
    from rmpsnn.app.configs import EvaluateOptions
    from rmpsnn.app.report import write_report

    with pytest.raises(InputError, match=r"^device='gpu' is not a device name") as e:
        evaluate_checkpoint(EvaluateOptions(checkpoint=str(tmp_path / "missing"), device="gpu"))
    assert e.value.key == "device"
    with pytest.raises(InputError, match=r"^device='gpu'"):
        write_report([tmp_path / "missing"], tmp_path / "report", device="gpu")
    assert "resolve_device" not in (pathlib.Path(rmpsnn.__file__).parent / "cli.py").read_text()
    # typed as the key, the message keeps the key
    assert main(["convert", "--ann", "a.safetensors", "run.device=gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rmpsnn convert: error: run.device='gpu'"), err


def test_config_device_mistake_names_the_config_key(tmp_path, capsys):
    assert main(["train", "data.dataset=synthetic", "run.device=gpu", f"run.out={tmp_path}/r"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.device='gpu' is not a device name; available here: cpu" in err[0]


def test_auto_device_resolves_to_what_exists():
    from rmpsnn.devices import available_devices, resolve_device

    assert str(resolve_device("auto")) in available_devices()
    assert resolve_device("cpu") == torch.device("cpu")


def test_help_does_not_import_torch():
    # `rmpsnn --help` must answer at once: the parser is built without torch (lazy sub-modules)
    code = (
        "import sys, rmpsnn.cli as c; p = c.build_parser(); p.format_help(); "
        "[a.format_help() for a in p._subparsers._group_actions[0].choices.values()]; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr


def test_cli_choices_come_from_the_registries(tmp_path, capsys):
    # the CLI freezes no list of names: a balancer registered by a plugin is a valid --balance,
    # a bogus one is refused naming the registry's choices
    from rmpsnn.conversion import available_balancers

    assert main(["convert", "--balance", "maximum", "--ann", str(tmp_path / "a.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "conversion.balance = 'maximum' is not a registered balancer" in err
    assert all(name in err for name in available_balancers())
    assert rmpsnn.neurons.LIF is not None and rmpsnn.conversion.convert is not None  # lazy attributes


def test_every_option_has_help_and_shows_its_default():
    from rmpsnn.cli import build_parser

    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
            if action.dest.startswith("cfg:") and "kwargs" not in action.dest:
                # a flag of a configuration key shows the key it sets and the command's default
                assert f"(default: {action.dest[4:]}=" in text, (name, action.dest)
            elif action.default not in (None, False) and not action.required and action.nargs != 0:
                assert f"(default: {action.default})" in text, (name, action.dest)
    # the epilog lists every key of the configuration with its default
    train_ann = parser._subparsers._group_actions[0].choices["train-ann"].format_help()
    assert "optim.lr (float, 0.05)" in train_ann and "run.imports (list, [])" in train_ann


def test_help_is_fast_and_generated_from_the_config_declarations():
    from rmpsnn.app.configs import ConversionSection

    help_text = subprocess.run(
        [sys.executable, "-m", "rmpsnn", "convert", "--help"], capture_output=True, text=True, check=True
    ).stdout
    field = ConversionSection.__dataclass_fields__["percentile"]
    # the help is the declaration's, never restated: text, default, the key it sets
    assert field.metadata["help"].split()[0] in help_text and "conversion.percentile=99.99" in help_text


def test_export_targets_a_peer_and_refuses_an_ann_with_a_hint(tmp_path, capsys):
    from rmpsnn.checkpoint import save_model
    from rmpsnn.models import create

    data = {"input_shape": [1, 8, 8], "time_major": False}
    kwargs = {"width": [4, 4, 4], "in_channels": 1, "image_size": 8, "num_classes": 2, "timesteps": 2}
    snn = save_model(tmp_path / "snn.safetensors", create("cpu_net", **kwargs), model_name="cpu_net",
                     model_kwargs=kwargs, data=data)  # fmt: skip
    capsys.readouterr()
    assert (
        main(["export", "--checkpoint", str(snn), "--target", "snntorch", "--out", str(tmp_path / "s.nir")])
        == 0
    )
    assert "for snntorch" in capsys.readouterr().out and (tmp_path / "s.nir").stat().st_size > 0
    ann_kwargs = {"width": [4, 4, 4], "in_channels": 1, "num_classes": 2}
    ann_model = create("ann_cpu_net", **ann_kwargs)
    ann = save_model(
        tmp_path / "ann.safetensors", ann_model, model_name="ann_cpu_net", model_kwargs=ann_kwargs
    )
    assert main(["export", "--checkpoint", str(ann), "--out", str(tmp_path / "a.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the ANN 'ann_cpu_net'" in err[0] and "convert it first" in err[0], err
    with pytest.raises(SystemExit):  # argparse: not a target
        main(["export", "--checkpoint", str(snn), "--target", "brian2"])
    assert "--target: target = 'brian2' is not allowed" not in capsys.readouterr().err  # names the flag once


def test_the_command_tunes_the_cpu_allocator_unless_told_not_to(monkeypatch):
    import sys

    from rmpsnn import devices

    calls = []
    monkeypatch.setattr(devices, "tune_cpu_allocator", lambda: calls.append(1) or True)
    assert main(["list", "neurons"]) == 0 and calls == [1]
    monkeypatch.undo()
    monkeypatch.setenv("RMPSNN_MALLOC_TUNING", "0")
    assert devices.tune_cpu_allocator() is False
    monkeypatch.delenv("RMPSNN_MALLOC_TUNING")
    glibc = sys.platform.startswith("linux") and hasattr(
        __import__("ctypes").CDLL(None), "gnu_get_libc_version"
    )
    assert devices.tune_cpu_allocator() is glibc


def _one_line_error(capsys, argv, *words):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err
    return err[0]


def test_outputs_never_replace_the_checkpoint_they_read(tmp_path, capsys):
    """An outside audit: ``evaluate --out`` and ``convert --out`` wrote JSON over the user's
    checkpoint; ``export --out FILE`` crashed; ``--target`` with safetensors was ignored; a wrong
    ``--input-shape`` was a traceback."""
    from rmpsnn.checkpoint import save_model
    from rmpsnn.models import create

    data = {"input_shape": [1, 8, 8], "time_major": False}
    kwargs = {"width": [4, 4, 4], "in_channels": 1, "image_size": 8, "num_classes": 2, "timesteps": 2}
    snn = save_model(tmp_path / "snn.safetensors", create("cpu_net", **kwargs), model_name="cpu_net",
                     model_kwargs=kwargs, data=data)  # fmt: skip
    before = snn.read_bytes()
    _one_line_error(
        capsys, ["evaluate", "--checkpoint", str(snn), "--out", str(snn)], "--out", ".safetensors"
    )
    _one_line_error(capsys, ["export", "--checkpoint", str(snn), "--out", str(snn)], "--out", "model.nir")
    _one_line_error(
        capsys,
        [
            "export",
            "--checkpoint",
            str(snn),
            "--format",
            "safetensors",
            "--target",
            "norse",
            "--out",
            str(tmp_path / "w"),
        ],
        "--target",
        "--format nir",
    )
    _one_line_error(
        capsys,
        ["export", "--checkpoint", str(snn), "--input-shape", "3", "8", "8", "--out", str(tmp_path / "x")],
        "--input-shape",
        "[1, 8, 8]",
    )
    _one_line_error(
        capsys,
        ["convert", "--ann", str(snn), "--out", str(snn), "data.dataset=synthetic"],
        "--out",
        "the file this command reads",
    )
    assert snn.read_bytes() == before and not (tmp_path / "x").exists()


def test_a_model_file_without_a_class_says_which_to_give(tmp_path, capsys):
    (tmp_path / "net.py").write_text("import torch\n")
    _one_line_error(
        capsys,
        [
            "convert",
            "--model",
            str(tmp_path / "net.py"),
            "--ann",
            str(tmp_path / "w.pt"),
            "data.dataset=synthetic",
        ],
        "net.py:ClassName",
    )


def test_ctrl_c_is_one_line_that_says_how_to_go_on(monkeypatch, capsys):
    import rmpsnn.training

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rmpsnn.training, "train", interrupted)
    assert main(["train", "data.dataset=synthetic"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rmpsnn train: interrupted; go on with rmpsnn train --resume RUN_DIR"]


def test_a_user_model_built_for_other_images_is_one_line(tmp_path, capsys):
    """A leading flatten hid the size mismatch from the layer check: a traceback, exit 1."""
    import torch

    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(7, 4)\n"
        "    def forward(self, x):\n        return torch.relu(self.fc(torch.flatten(x, 1)))\n"
    )
    torch.save({"fc.weight": torch.zeros(4, 7), "fc.bias": torch.zeros(4)}, tmp_path / "w.pt")
    argv = ["convert", "--model", f"{tmp_path / 'net.py'}:Net", "--ann", str(tmp_path / "w.pt")]
    _one_line_error(
        capsys, [*argv, "data.dataset=synthetic", f"run.out={tmp_path / 'c.json'}"], "cannot take", "mat1"
    )


def test_max_pooling_mode_is_a_convert_option(capsys):
    """``convert(maxpool=)`` was reachable from Python only (the docs tell NIR users to pick avg)."""
    from rmpsnn.app.configs import load_convert_config
    from rmpsnn.conversion.graph import MAXPOOL_MODES

    assert load_convert_config(None, ["conversion.maxpool=avg"]).conversion.maxpool == "avg"
    _one_line_error(capsys, ["convert", "--maxpool", "max", "--ann", "x.safetensors"], "spiking, avg, error")
    assert set(MAXPOOL_MODES) == {"spiking", "avg", "error"}


def test_a_mistyped_flag_is_named_alone_with_the_nearest_one(capsys):
    """The overrides around a mistyped flag were listed as unrecognized too, under a usage block."""
    with pytest.raises(SystemExit) as e:
        main(["train", "model.timesteps=2", "--epcohs", "1", "optim.batch_size", "8", "run.out=x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epcohs (did you mean --epochs?)" in err[0], err
    assert (
        "optim.batch_size (an override is section.key=value" in err[0] and "model.timesteps=2" not in err[0]
    )


def test_a_mistyped_command_or_choice_gets_the_nearest_one(capsys):
    for argv, near in ((["trian"], "did you mean 'train'?"), (["list", "modles"], "did you mean 'models'?")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and near in err[0], err
