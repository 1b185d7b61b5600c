"""User code from the command line (`--import`, `run.imports`): a plugin file written here registers
a data set, a model and a balancer, and every command reaches them -- `train`, `evaluate`,
`export`, `report`, `--resume` re-import the plugin from the run's stored configuration."""

import json
import sys
import textwrap

import pytest
import yaml

from rmpsnn import plugins
from rmpsnn.cli import main
from rmpsnn.data.config import DATASETS
from rmpsnn.models.registry import MODELS

PLUGIN = textwrap.dedent(
    '''
    """A user's plugin: a data set, a spiking model and a balancer."""
    import numpy as np

    from rmpsnn.conversion import register_balancer
    from rmpsnn.conversion.balancing import get_balancer
    from rmpsnn.data import ImageArrays, register_dataset
    from rmpsnn.models import create, register


    @register_dataset("plug-stripes", images=True)
    def stripes(cfg, split, seed):
        """bright horizontal stripes or not (a plugin's data set)"""
        rng = np.random.default_rng([seed, split == "test"])
        n = 32 if split == "train" else 8
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
        images[labels == 1, :, ::2] += 150
        return ImageArrays(images, labels.astype(np.int64), ["plain", "striped"])


    @register("plug_net", kind="snn")
    def plug_net(num_classes=10, timesteps=4, in_channels=3, image_size=32, **neuron):
        """cpu_net at widths 4/4/4 (a plugin's model)"""
        return create("cpu_net", num_classes=num_classes, timesteps=timesteps, in_channels=in_channels,
                      image_size=image_size, width=(4, 4, 4), **neuron)


    @register_balancer("plug-twice-act-max")
    def twice(snn, ctx):
        return [2 * t for t in get_balancer("act-max").fn(snn, ctx)]
    '''
)


def _forget():
    """Make this process forget the plugin, as a new process would."""
    for name in [m for m in sys.modules if m.startswith("rmpsnn_user_my_plugins_")]:
        del sys.modules[name]
    for registry, name in ((DATASETS, "plug-stripes"), (MODELS, "plug_net")):
        if name in registry:
            registry.unregister(name)
    from rmpsnn import conversion

    balancers = getattr(conversion, "BALANCERS", None)
    if balancers is not None and "plug-twice-act-max" in balancers:
        balancers.unregister("plug-twice-act-max")
    elif balancers is None:
        from rmpsnn.conversion import balancing

        balancing._BALANCERS.pop("plug-twice-act-max", None)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "my_plugins.py"
    path.write_text(PLUGIN)
    monkeypatch.setattr(plugins, "_imported", {})
    _forget()
    yield path
    _forget()


def _run(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_every_command_reaches_the_plugin_of_the_run(plugin, tmp_path, monkeypatch, capsys):
    run = tmp_path / "snn"
    tiny = ["optim.epochs=1", "optim.batch_size=8", "model.timesteps=2", "run.progress=off"]
    _run(capsys, "train", "--import", plugin, "data.dataset=plug-stripes", "--model", "plug_net", *tiny,
         f"run.out={run}")  # fmt: skip
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["run"]["imports"] == [str(plugin.resolve())] and stored["model"]["name"] == "plug_net"
    # each command below runs as in a new process: the plugin is imported from the run itself
    for argv, expect in (
        (["evaluate", "--checkpoint", run], "plug_net T=2: test accuracy"),
        (["export", "--checkpoint", run, "--out", tmp_path / "m.nir"], "input [1, 8, 8]"),
        (["report", run, "--out", tmp_path / "rep", "--images", "8"], "wrote"),
        (["train", "--resume", run], ""),
    ):
        monkeypatch.setattr(plugins, "_imported", {})
        _forget()
        assert expect in _run(capsys, *argv)
    assert (tmp_path / "m.nir").is_file() and (tmp_path / "rep").is_dir()


def test_a_plugin_balancer_and_data_set_from_flags_and_from_a_config_file(plugin, tmp_path, capsys):
    ann = tmp_path / "ann.safetensors"
    flags = ["--epochs", "1", "--batch-size", "8", "--width", "4", "4", "4", "--out", ann]
    _run(
        capsys,
        "train-ann",
        "--import",
        plugin,
        "data.dataset=plug-stripes",
        *flags,
        f"run.out={tmp_path / 'a'}",
    )
    _forget()
    plugins._imported.clear()
    # the ANN's run names the plugin: its balancer is a valid --balance without --import
    out = tmp_path / "c.json"
    common = [
        "--ann",
        ann,
        "data.dataset=plug-stripes",
        "--reset",
        "soft",
        "--calibrate",
        "none",
        "--calib",
        "8",
        "--timesteps",
        "2",
    ]
    _run(capsys, "convert", *common, "--balance", "plug-twice-act-max", "--out", out)
    assert json.loads(out.read_text())["variants"]["soft reset"]["balance"] == "plug-twice-act-max"
    # the same from a config file that imports the plugin itself
    _forget()
    plugins._imported.clear()
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"run: {{imports: [{plugin}], out: {tmp_path / 'fromfile'}, progress: 'off'}}\n"
        "data: {dataset: plug-stripes}\nmodel: {name: plug_net, timesteps: 2}\n"
        "optim: {epochs: 1, batch_size: 8}\n"
    )
    _run(capsys, "train", "--config", cfg)
    assert (tmp_path / "fromfile" / "best.safetensors").is_file()


def test_import_mistakes_are_one_line(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    for spec, fragment in (
        (tmp_path / "missing.py", "no such file"),
        ("no_such_module_xyz", "No module named 'no_such_module_xyz'"),
        (tmp_path / "broken.py", "the plugin raised RuntimeError: boom"),
    ):
        capsys.readouterr()
        assert main(["list", "models", "--import", str(spec)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err


def test_list_prints_every_registry(capsys):
    for what, name in (
        ("models", "cpu_net"),
        ("datasets", "emulated-dvs"),
        ("neurons", "lif"),
        ("surrogates", "atan"),
        ("balancers", "spike-max"),
    ):
        capsys.readouterr()
        assert main(["list", what]) == 0
        assert name in capsys.readouterr().out, what


NEURON_PLUGIN = textwrap.dedent(
    '''
    from rmpsnn.neurons import LIF, NEURONS


    @NEURONS.register("plug-lif")
    class PlugLIF(LIF):
        """a LIF registered by a plugin"""
    '''
)


def test_a_plugin_neuron_from_the_cli_and_from_a_config_file(tmp_path, monkeypatch, capsys):
    import dataclasses

    from rmpsnn import neurons
    from rmpsnn.training.config import ModelSection

    if not hasattr(neurons, "NEURONS") or "neuron" not in {f.name for f in dataclasses.fields(ModelSection)}:
        pytest.skip("needs the neuron registry (rmpsnn.neurons.NEURONS) and model.neuron")
    path = tmp_path / "neuron_plugin.py"
    path.write_text(NEURON_PLUGIN)
    monkeypatch.setattr(plugins, "_imported", {})
    tiny = ["data.dataset=synthetic", "data.train_limit=16", "data.test_limit=8", "optim.epochs=1"]
    tiny += ["optim.batch_size=8", "model.timesteps=2", "model.kwargs.width=[4,4,4]", "run.progress=off"]
    try:
        _run(capsys, "train", "--import", path, *tiny, "model.neuron=plug-lif", f"run.out={tmp_path / 'a'}")
        cfg = tmp_path / "n.yaml"
        cfg.write_text(f"run: {{imports: [{path}]}}\nmodel: {{neuron: plug-lif}}\n")
        _run(capsys, "train", "--config", cfg, *tiny, f"run.out={tmp_path / 'b'}")
        assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["model"]["neuron"] == "plug-lif"
    finally:
        if "plug-lif" in neurons.NEURONS:
            neurons.NEURONS.unregister("plug-lif")


def test_a_file_given_to_import_and_to_model_runs_once(tmp_path, monkeypatch):
    """One importer for user files: ``--import f.py`` and ``--model f.py:Net`` share the module."""
    from rmpsnn.app.user_model import resolve_model_factory

    monkeypatch.setattr(plugins, "_imported", {})
    log, path = tmp_path / "ran.txt", tmp_path / "net_and_plugins.py"
    path.write_text(
        f"open({str(log)!r}, 'a').write('x')\nimport torch\nclass Net(torch.nn.Module):\n    pass\n"
    )
    plugins.import_plugins([str(path)])
    assert resolve_model_factory(f"{path}:Net").__name__ == "Net"
    assert log.read_text() == "x"


def test_a_moved_plugin_is_named_with_its_source_and_found_again_with_import(
    plugin, tmp_path, monkeypatch, capsys
):
    """An outside audit: after the plugin file moved, every command failed with an --import the
    user never typed, and --import NEW.py did not help (the stored path was still tried)."""
    run = tmp_path / "snn"
    tiny = ["optim.epochs=1", "optim.batch_size=8", "model.timesteps=2", "run.progress=off"]
    _run(capsys, "train", "--import", plugin, "data.dataset=plug-stripes", "--model", "plug_net", *tiny,
         f"run.out={run}")  # fmt: skip
    moved = tmp_path / "elsewhere" / "renamed_plugins.py"
    moved.parent.mkdir()
    plugin.rename(moved)
    monkeypatch.setattr(plugins, "_imported", {})
    _forget()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stored in its run.imports" in err[0] and "--import NEW_PLACE.py" in err[0], err
    for name in [m for m in sys.modules if m.startswith("rmpsnn_user_renamed_plugins_")]:
        del sys.modules[name]
    assert "plug_net T=2: test accuracy" in _run(capsys, "evaluate", "--import", moved, "--checkpoint", run)
    for name in [m for m in sys.modules if m.startswith("rmpsnn_user_renamed_plugins_")]:
        del sys.modules[name]


def test_a_config_files_relative_import_is_read_beside_it(plugin, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cfgdir"
    folder.mkdir()
    plugin.rename(folder / "my_plugins.py")
    (folder / "c.yaml").write_text(
        "run: {imports: [my_plugins.py], progress: false}\n"
        "data: {dataset: plug-stripes}\nmodel: {name: plug_net, timesteps: 2}\n"
        "optim: {epochs: 1, batch_size: 8}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    _run(capsys, "train", "--config", folder / "c.yaml", f"run.out={tmp_path / 'r'}")
    stored = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert stored["run"]["imports"] == [str((folder / "my_plugins.py").resolve())]
