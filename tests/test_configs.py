"""Every command's configuration: the files in configs/ load, overrides are typed and checked the
same way for train, train-ann and convert, and the CLI options are overrides of the config."""

import json
from pathlib import Path

import pytest

from rmpsnn.app.configs import ConvertConfig, load_convert_config
from rmpsnn.cli import main
from rmpsnn.conversion import balancing as balancing_module
from rmpsnn.conversion import register_balancer
from rmpsnn.errors import ConfigError
from rmpsnn.training import ann_config, load_config

from .conftest import write_two_class_folder

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads_with_its_command(path):
    if path.name == "convert.yaml":
        cfg = load_convert_config(path)
        assert cfg.conversion.reset == "both" and cfg.data.test_limit == 500
    elif path.name.startswith("ann_"):
        cfg = ann_config(path)
        assert cfg.rmp.enabled is False and cfg.model.name.startswith("ann_")
    else:
        cfg = load_config(path)
        assert not cfg.model.name.startswith("ann_")


def test_convert_config_overrides_are_typed_and_named():
    cfg = load_convert_config(
        None, ["conversion.v_init=0.25", "conversion.per_channel=false", "eval.timesteps=8"]
    )
    assert cfg.v_init() == 0.25 and cfg.conversion.per_channel is False and cfg.eval.timesteps == 8
    assert load_convert_config().v_init() == "auto" and isinstance(ConvertConfig().data.dataset, str)
    for override, message in (
        ("conversion.balance=maximum", r"conversion\.balance = 'maximum' is not a registered balancer"),
        (
            "conversion.reset=zero",
            r"conversion\.reset = 'zero' is not allowed; allowed values: soft, hard, both",
        ),
        ("conversion.v_init=high", r"conversion\.v_init = 'high' is not allowed"),
        ("eval.timesteps=0", r"eval\.timesteps must be >= 1"),
        ("conversion.scale=nan", r"conversion\.scale must be a finite number"),
        ("eval.steps=4", r"unknown key eval\.steps; keys of eval: timesteps, batch_size"),
        ("data.dataset=mnist", r"data\.dataset = 'mnist' is not a registered data set"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_convert_config(None, [override])


def test_convert_from_a_config_file_with_a_user_balancer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    folder = write_two_class_folder(tmp_path / "imgs", size=16, n_train=16, n_test=6)
    ann = tmp_path / "ann.safetensors"
    args = ["--data", str(folder), "--epochs", "2", "--batch-size", "8", "--width", "4", "4", "4"]
    assert main(["train-ann", *args, "--out", str(ann), f"run.out={tmp_path / 'run'}"]) == 0

    @register_balancer("twice-act-max")
    def _twice(snn, ctx):
        return [2 * t for t in balancing_module.get_balancer("act-max").fn(snn, ctx)]

    try:
        cfg = tmp_path / "convert.yaml"
        cfg.write_text(
            f"ann: {{checkpoint: {tmp_path / 'run'}}}\n"  # the run directory works as well as the file
            f"data: {{dataset: images, root: {folder}}}\n"
            "conversion: {reset: soft, balance: twice-act-max, calibrate: none, calib_images: 8}\n"
            f"eval: {{timesteps: 4}}\nrun: {{out: {tmp_path / 'c.json'}}}\n"
        )
        # the option overrides the file, and a key=value override the defaults
        assert main(["convert", "--config", str(cfg), "--timesteps", "8", "eval.batch_size=3"]) == 0
    finally:
        balancing_module.BALANCERS.unregister("twice-act-max")
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["timesteps"] == [1, 2, 4, 8] and list(res["variants"]) == ["soft reset"]
    assert res["variants"]["soft reset"]["balance"] == "twice-act-max" and res["test_images"] == 12
    capsys.readouterr()


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.kwargs.bogus=1", "model.kwargs.bogus: model 'cpu_net' takes no argument 'bogus'; it takes"),
        ("model.kwargs.widht=[8,8,8]", "takes no argument 'widht' (did you mean width?)"),
        ("model.kwargs.width=[8]", "model.kwargs = {'width': [8]} do not build model 'cpu_net'"),
        ("model.kwargs.v_th=nan", "v_th must be a number"),
        ("model.kwargs.v_th=.nan", "model.kwargs.v_th must be finite"),
        ("run.seed=-1", "run.seed must be in [0, 4294967295], got -1"),
        ("run.seed=99999999999999999999", "run.seed = 99999999999999999999 is too large an integer"),
        ("conversion.v_init=nan", "conversion.v_init = 'nan' is not allowed"),
    ],
)
def test_bad_config_values_are_one_line_and_exit_2(override, fragment, tmp_path, capsys):
    command = "convert" if override.startswith("conversion.") else "train"
    argv = [command, "data.dataset=synthetic", override, f"run.out={tmp_path / 'r'}"]
    if command == "convert":
        argv[-1] = f"run.out={tmp_path / 'c.json'}"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a text file" in err[0], err


def test_one_declaration_per_option():
    # the percentile lives in one field with one check, and the flag, the override and the YAML
    # key all go through it
    from rmpsnn.app.configs import ConversionSection

    for value in ("0", "100.5", "-1"):
        with pytest.raises(ConfigError, match=r"conversion\.percentile must be in \(0, 100\]"):
            load_convert_config(None, [f"conversion.percentile={value}"])
    assert load_convert_config(None, ["conversion.percentile=100"]).conversion.percentile == 100
    assert ConversionSection().percentile == 99.99
    with pytest.raises(ConfigError, match=r"conversion\.percentile must be in \(0, 100\]"):
        load_convert_config({"conversion": {"percentile": 0}})
