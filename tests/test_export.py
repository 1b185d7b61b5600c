"""NIR export/import round trips (identical outputs), soft-reset handling, safetensors export."""

import warnings

import numpy as np
import pytest
import torch

from rmpsnn.cli import main
from rmpsnn.errors import NIRExportError
from rmpsnn.export import export_safetensors, from_nir, load_exported, to_nir
from rmpsnn.layers import TdBatchNorm2d
from rmpsnn.models import create
from rmpsnn.models.spiking import _DEFAULTS, SpikingNet, _gap_head, _neuron_kwargs, _stage

nir = pytest.importorskip("nir")


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.6 - 0.3)
    return model.eval()


def _tiny_resnet(reset="hard"):
    nk = _neuron_kwargs(**{**_DEFAULTS, "reset": reset})
    body, c = _stage(4, [4, 8], [1, 1], 1, nk, "conv", 0.5)
    return SpikingNet(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), TdBatchNorm2d(4), body, _gap_head(c, 10), 3, nk
    )


@pytest.mark.parametrize("which", ["cpu_net", "resnet"])
def test_nir_round_trip_gives_identical_outputs(tmp_path, which):
    torch.manual_seed(0)
    if which == "cpu_net":
        model = create("cpu_net", width=(4, 8, 8), image_size=16, timesteps=3, readout="final")
    else:
        model = _tiny_resnet()
    model = _randomise_bn(model)
    x = torch.randn(4, 3, 16, 16)
    ref = model(x)
    path = tmp_path / "net.nir"
    graph = to_nir(model, x, path)
    read = nir.read(str(path))  # the nir package reads what we wrote
    assert set(read.nodes) == set(graph.nodes) and len(read.edges) == len(graph.edges)
    kinds = {type(n).__name__ for n in read.nodes.values()}
    assert {"Conv2d", "LIF", "Affine", "I", "Input", "Output"} <= kinds
    assert not any("bn" in k for k in read.nodes)  # batch norm folded into the convolutions
    net = from_nir(read)
    out = net(x)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    lif = next(n for n in read.nodes.values() if isinstance(n, nir.LIF))
    # u[t] = 0.25 u[t-1] + x[t]  <=>  tau = dt / (1 - 0.25), R = tau / dt
    assert float(lif.tau.flat[0]) == pytest.approx(4 / 3) and float(lif.r.flat[0]) == pytest.approx(4 / 3)
    if which == "resnet":
        sums = [k for k in read.nodes if sum(1 for e in read.edges if e[1] == k) == 2]
        assert sums and all(k.endswith("lif2") for k in sums)  # residual addition = two edges in


def test_soft_reset_is_never_exported_silently(tmp_path):
    model = _randomise_bn(_tiny_resnet(reset="soft"))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(NIRExportError, match="soft reset"):
        to_nir(model, x)
    with pytest.warns(UserWarning, match="soft reset"):
        to_nir(model, x, tmp_path / "soft.nir", allow_lossy_reset=True)
    read = nir.read(str(tmp_path / "soft.nir"))
    lif = read.nodes["stem_lif"]
    assert float(lif.v_reset.flat[0]) == 0.0 and lif.metadata["rmpsnn"]["reset"] == "soft"
    net = from_nir(read)
    assert all(m.reset == "soft" for m in net.modules() if hasattr(m, "reset"))
    torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)


def test_unsupported_layers_are_named():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2))
    with pytest.raises(NIRExportError, match=r"1: MaxPool2d cannot be expressed"):
        to_nir(model, torch.randn(1, 3, 8, 8))


def test_safetensors_export_and_cli(tmp_path, capsys):
    model = _randomise_bn(create("cpu_net", width=(4, 8, 8), image_size=16, timesteps=2))
    files = export_safetensors(
        model,
        tmp_path / "exp",
        model_name="cpu_net",
        model_kwargs={"width": [4, 8, 8], "image_size": 16, "timesteps": 2},
        mean=[0.5] * 3,
    )
    back, info = load_exported(tmp_path / "exp")
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(back.eval()(x), model(x)) and info["mean"] == [0.5] * 3
    assert files["weights"].read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            main(
                [
                    "export",
                    "--checkpoint",
                    str(files["weights"]),
                    "--format",
                    "nir",
                    "--out",
                    str(tmp_path / "m.nir"),
                ]
            )
            == 0
        )
    assert (tmp_path / "m.nir").stat().st_size > 0 and "wrote" in capsys.readouterr().out


class _TinyResidualANN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(6)
        self.conv2 = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.conv2(a) + a)
        return self.fc(torch.flatten(self.pool(b), 1))


@pytest.mark.parametrize("v_init", [None, "half"])
def test_converted_snn_round_trips_through_nir(tmp_path, v_init):
    from rmpsnn.conversion import convert

    torch.manual_seed(0)
    ann = _TinyResidualANN().eval()  # the residual addition becomes summed edges
    x = torch.randn(8, 3, 12, 12)
    snn = convert(ann, x, v_init=v_init, signed=False)  # NIR has no negative spikes
    ref = snn(x, 8)[-1]
    with pytest.raises(NIRExportError, match="soft reset"):
        to_nir(snn, x[:1], timesteps=8)
    with pytest.warns(UserWarning, match="soft reset"):
        to_nir(snn, x[:1], tmp_path / "conv.nir", allow_lossy_reset=True, timesteps=8)
    read = nir.read(str(tmp_path / "conv.nir"))
    assert sum(isinstance(n, nir.IF) for n in read.nodes.values()) == len(snn.if_nodes)
    assert sum(isinstance(n, nir.Scale) for n in read.nodes.values()) == len(snn.if_nodes)
    net = from_nir(read)
    torch.testing.assert_close(net(x), ref, rtol=1e-5, atol=1e-5)


def test_calibrated_conversion_exports_and_an_unfoldable_bias_is_refused(tmp_path):
    """Bias calibration folds into the convs (the default conversion exports and round-trips,
    see above); an IF layer that had to keep its own bias is refused with a clear message."""
    from rmpsnn.conversion import convert

    torch.manual_seed(0)
    ann = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(36, 2),
    )  # fmt: skip
    x = torch.randn(16, 3, 8, 8)
    snn = convert(ann, x, calibration_timesteps=8, signed=False)
    assert snn.if_nodes[1].bias is not None
    with pytest.raises(NIRExportError, match=r"calibration bias of its own.*calibrate='none'"):
        to_nir(snn, x[:1], tmp_path / "x.nir", allow_lossy_reset=True, timesteps=4)
    plain = convert(ann, x, calibrate="none")
    with pytest.warns(UserWarning, match="soft reset"):
        to_nir(plain, x[:1], tmp_path / "y.nir", allow_lossy_reset=True, timesteps=4)


def _stack(*neurons):
    from rmpsnn.layers import TimeFolded

    return torch.nn.Sequential(
        TimeFolded(torch.nn.Linear(6, 8)), neurons[0], TimeFolded(torch.nn.Linear(8, 4)), neurons[1]
    ).eval()


def test_a_stack_ending_in_spikes_exports_and_round_trips(tmp_path):
    from rmpsnn.neurons import LIF

    torch.manual_seed(0)
    net = _stack(LIF(), LIF(v_th=0.2))
    x = torch.rand(7, 3, 6) * 3
    graph = to_nir(net, x, tmp_path / "s.nir")  # was: type mismatch [[4]] -> [[3 4]]
    assert list(graph.nodes["output"].input_type["input"]) == [4]
    assert torch.equal(from_nir(tmp_path / "s.nir")(x), net(x))


def test_neurons_export_by_their_parameters_not_their_class():
    from rmpsnn.neurons import LIF, SpikingNeuron

    x = torch.rand(5, 2, 6) * 3
    graph = to_nir(_stack(LIF(tau=1.0), SpikingNeuron(tau=0.25)), x)  # was: ZeroDivisionError, refused
    assert isinstance(graph.nodes["1"], nir.IF) and isinstance(graph.nodes["3"], nir.LIF)
    np.testing.assert_allclose(graph.nodes["3"].tau, 1 / 0.75, rtol=1e-6)


@pytest.mark.parametrize("dt", [1.0, 1e-3, 1e-4])
def test_the_time_step_is_written_and_read_back(dt):
    from rmpsnn.neurons import IF, LIF

    torch.manual_seed(1)
    net = _stack(LIF(), IF(reset="hard"))
    x = torch.rand(6, 3, 6) * 3
    graph = to_nir(net, x, dt=dt)
    lif, if_ = graph.nodes["1"], graph.nodes["3"]
    np.testing.assert_allclose(lif.tau, dt / 0.75, rtol=1e-6)  # beta = 1 - dt / tau = 0.25
    np.testing.assert_allclose(lif.r, 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(if_.r, 1 / dt, rtol=1e-6)
    assert torch.equal(from_nir(graph)(x), net(x))  # the graph's metadata says its dt
    with pytest.raises(NIRExportError, match=r"shorter than the time step.*dt=1e-4"):
        from_nir(to_nir(net, x, dt=1e-4), dt=1.0)
    with pytest.raises(ValueError, match="unknown target 'lava'"):
        to_nir(net, x, target="lava")


def test_flatten_is_written_with_dims_every_reader_agrees_on():
    model = create("cpu_net", width=(4, 8, 8), image_size=16, timesteps=2).eval()
    graph = to_nir(model, torch.rand(2, 3, 16, 16))
    flat = next(n for n in graph.nodes.values() if isinstance(n, nir.Flatten))
    assert (flat.start_dim, flat.end_dim) == (-3, -1)  # not 0: snnTorch and Norse read dims as torch's
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(from_nir(graph)(x), model(x), atol=1e-5)


# ----------------------------------------------------------------------------- issue 26
def _graph(nodes: dict, metadata=None):
    """input -> each node in order -> output."""
    names = list(nodes)
    edges = list(zip(["input", *names], [*names, "output"], strict=True))
    all_nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        **nodes,
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    return nir.NIRGraph(nodes=all_nodes, edges=edges, metadata=metadata or {}, type_check=False)


def _conv(weight, groups=1):
    return nir.Conv2d(
        input_shape=(6, 6), weight=weight, stride=1, padding=0, dilation=1, groups=groups,
        bias=np.zeros(weight.shape[0], np.float32),
    )  # fmt: skip


def _lif(tau, n=4):
    full = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(1), v_leak=full(0), v_threshold=full(1), v_reset=full(0))


@pytest.mark.parametrize(
    ("nodes", "metadata", "message"),
    [
        ({"lif": _lif(0.0)}, None, "tau=0; a time constant must be > 0"),
        ({"lif": _lif(float("nan"))}, None, "tau holds NaN"),
        ({"c": _conv(np.ones((4, 2, 3, 3), np.float32), groups=0)}, None, "groups=0 must be >= 1"),
        ({"c": _conv(np.ones((4, 2, 3, 3, 3), np.float32))}, None, "weight has 5 dimensions"),
        ({"c": _conv(np.ones((4, 2, 3, 3), np.float32))}, {"rmpsnn": {"timesteps": 1e12}},
         "timesteps=1000000000000.0 must be"),
        ({"c": _conv(np.ones((4, 2, 3, 3), np.float32))}, {"rmpsnn": {"timesteps": "x"}}, "not a number"),
        ({"p": nir.AvgPool2d(kernel_size=np.array([0, 0]), stride=np.array([1, 1]),
                             padding=np.array([0, 0]))}, None, "must be >= 1"),
    ],
)  # fmt: skip
def test_malformed_nir_graphs_are_one_line_errors_at_import(nodes, metadata, message):
    with pytest.raises(NIRExportError, match=message.replace("(", r"\(").replace("+", r"\+")) as e:
        from_nir(_graph(nodes, metadata))
    assert "\n" not in str(e.value)


def test_thresholds_that_do_not_fit_the_channels_are_named():
    from rmpsnn.layers import TimeFolded
    from rmpsnn.neurons import LIF

    net = torch.nn.Sequential(TimeFolded(torch.nn.Conv2d(2, 4, 3)), LIF(v_th=torch.ones(3))).eval()
    from rmpsnn.errors import InputError

    with pytest.raises(InputError, match=r"v_th of shape \(3,\).*per-channel vector of length 4"):
        to_nir(net, torch.rand(2, 1, 2, 6, 6))  # one line, not numpy's broadcast error


def test_a_converted_snn_started_at_half_the_threshold_is_not_exported_for_other_tools():
    from rmpsnn.conversion import convert

    torch.manual_seed(0)
    ann = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    )
    x = torch.rand(16, 8)
    snn = convert(ann.eval(), x, calibrate="none", v_init="half", signed=False)
    for target in ("spikingjelly", "norse", "snntorch"):
        with pytest.raises(NIRExportError, match=r"v_init='half'.*Convert with v_init=None"):
            to_nir(snn, x[:2], timesteps=8, target=target, allow_lossy_reset=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = from_nir(to_nir(snn, x[:2], timesteps=8, allow_lossy_reset=True))  # rmpsnn keeps it
    torch.testing.assert_close(back(x[:2].expand(8, -1, -1)), snn(x[:2], 8)[-1])


@pytest.mark.parametrize(("readout", "how"), [("mean", "average"), ("final", "sum")])
def test_the_portable_graph_says_how_to_read_out_rmpsnns_logits(readout, how):
    """An outside audit: a ``mean`` read-out model's graph said "sum the outputs over time", which
    gives T times rmpsnn's logits."""
    from rmpsnn.models import create

    model = create("cpu_net", width=(4, 4, 4), image_size=8, num_classes=2, timesteps=2, readout=readout)
    graph = to_nir(model, torch.zeros(1, 3, 8, 8), target="snntorch")
    note = [c for c in graph.metadata["rmpsnn"]["portable"] if "read-out" in c]
    assert len(note) == 1 and f"({how} the outputs over time" in note[0], note


def test_the_exported_graph_says_how_its_inputs_are_normalised(tmp_path, capsys):
    """The safetensors export carried the input mean/std; the NIR graph did not."""
    import nir

    from rmpsnn.checkpoint import save_model

    kwargs = {"width": [4, 4, 4], "in_channels": 1, "image_size": 8, "num_classes": 2, "timesteps": 2}
    data = {"input_shape": [1, 8, 8], "time_major": False}
    snn = save_model(tmp_path / "snn.safetensors", create("cpu_net", **kwargs), model_name="cpu_net",
                     model_kwargs=kwargs, data=data, mean=[0.25], std=[0.5])  # fmt: skip
    for target in ([], ["--target", "snntorch"]):
        out = tmp_path / f"m{len(target)}.nir"
        assert main(["export", "--checkpoint", str(snn), *target, "--out", str(out)]) == 0
        meta = nir.read(out).metadata["rmpsnn"]
        assert list(meta["input_mean"]) == [0.25] and list(meta["input_std"]) == [0.5], meta
