"""ANN -> SNN conversion: exactness, graphs the converter accepts, and its error messages."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmpsnn.conversion import (
    ConvertedSNN,
    IFNode,
    SpikingMaxPool,
    build_snn_graph,
    convert,
    evaluate_over_time,
    simulate,
    simulate_layer,
)
from rmpsnn.conversion.observers import ann_view
from rmpsnn.errors import ConversionError, InputError
from rmpsnn.models import QCFS, create


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5))


def ann_activations(ann, x):
    acts, h = [], x
    for m in ann:
        h = m(h)
        if isinstance(m, (nn.ReLU, QCFS)):
            acts.append(h)
    return acts


def output_sums(snn, x, T):
    """Each IF layer's output (spikes·θ) summed over the T steps, gathered by forward hooks."""
    sums = {}

    def hook(m, _inputs, out):
        s = out.unflatten(0, (m.chunk, -1)).sum(0)
        sums[m] = s if m not in sums else sums[m] + s

    handles = [m.register_forward_hook(hook) for m in snn.if_nodes]
    try:
        snn(x, T)
    finally:
        for h in handles:
            h.remove()
    return [sums[m] for m in snn.if_nodes]


def rate_errors(snn, x, acts, T):
    return [((s / T) - a).abs().mean().item() for s, a in zip(output_sums(snn, x, T), acts, strict=True)]


def test_soft_reset_rates_converge_to_ann_activations_as_1_over_T():
    """With soft reset, direct input and thresholds at the max activation, rate x threshold of
    every layer approaches the ANN activation with an error that shrinks ~1/T (no calibration:
    its bias correction is tuned for one horizon)."""
    ann = mlp()
    x = torch.rand(64, 20)
    acts = ann_activations(ann, x)
    snn = convert(ann, x, balance="act-max", calibrate="none")
    e64 = rate_errors(snn, x, acts, 64)
    e1024 = rate_errors(snn, x, acts, 1024)
    for a, b in zip(e64, e1024, strict=True):
        assert b < a / 8  # 16x more steps: error at least 8x smaller (~1/T)
        assert a * 64 < 1.0  # and O(1/T) in absolute terms
    hard = convert(ann, x, balance="act-max", reset="hard", calibrate="none")
    e_hard = rate_errors(hard, x, acts, 1024)
    assert e_hard[0] > 4 * e1024[0]  # hard reset loses the residual: it converges far slower


def test_qcfs_conversion_is_exact_at_T_equal_levels():
    """IF with soft reset and v_init = θ/2 integrating a constant current reproduces QCFS with L = T."""
    torch.manual_seed(1)
    q = QCFS(levels=4, threshold=2.0)
    ann = nn.Sequential(nn.Linear(10, 16), q, nn.Linear(16, 3))
    x = torch.randn(32, 10)
    snn = convert(ann)  # balance "auto" -> the trained λ; v_init "auto" -> half
    node = snn.if_nodes[0]
    assert snn.balance == "qcfs" and node.v_init == "half" and float(node.v_th) == pytest.approx(2.0)
    acts = ann_activations(ann, x)
    assert rate_errors(snn, x, acts, 4)[0] < 1e-5


class Residual(nn.Module):
    """Functional ReLUs (F.relu, torch.relu, .relu()), a residual addition and a BN."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = torch.relu(self.c2(h) + h)
        h = self.pool(h).relu()
        return self.fc(self.drop(torch.flatten(h, 1)))


def _calibrate_bn(model, shape):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(*shape))
    return model.eval()


def test_bn_folding_and_graph_preserve_the_ann_function():
    ann = _calibrate_bn(Residual(), (16, 3, 8, 8))
    gm, names = build_snn_graph(ann)
    assert names == ["if_0", "if_1", "if_2"]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in gm.modules())
    x = torch.randn(8, 3, 8, 8)
    with ann_view(ConvertedSNN(gm, names)):  # the IF layers' ANN activations back in the graph
        torch.testing.assert_close(gm(x), ann(x), atol=1e-5, rtol=1e-5)
    assert all(isinstance(gm.get_submodule(n), IFNode) for n in names)


@pytest.mark.parametrize("balance", ["act-max", "percentile", "spike-max"])
def test_functional_residual_net_converges_to_ann_predictions(balance):
    ann = _calibrate_bn(Residual(), (32, 3, 8, 8))
    x = torch.randn(64, 3, 8, 8)
    y = ann(x).argmax(1)
    snn = convert(ann, x[:32], balance=balance, balance_timesteps=32)
    r = evaluate_over_time(snn, (x, y), timesteps=[4, 64, 512])
    assert r["accuracy"][-1] >= 0.85 and r["accuracy"][-1] >= r["accuracy"][0]
    assert set(r["firing_rates"]) == {"if_0", "if_1", "if_2"} and all(
        0 < v < 1 for v in r["firing_rates"].values()
    )


def test_resnet_with_and_without_bn_and_vgg_convert():
    for model, n_if in [
        (create("ann_resnet20", bn=False), 19),
        (create("ann_resnet20"), 19),
        (create("ann_vgg16", hidden=32), 15),
    ]:
        _calibrate_bn(model, (4, 3, 32, 32))
        x = torch.randn(4, 3, 32, 32)
        snn = convert(model, x, balance="act-max")
        assert len(snn.if_nodes) == n_if
        out = snn(x, 3)
        assert out.shape == (3, 4, 10)


def test_resnet34_imagenet_layout_converts():
    model = _calibrate_bn(create("ann_resnet34", num_classes=7), (2, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    snn = convert(model, x, balance="percentile", percentile=99.9)
    assert len(snn.if_nodes) == 1 + 2 * (3 + 4 + 6 + 3)  # stem + two per basic block
    assert snn(x, 2).shape == (2, 2, 7)


def test_one_simulation_gives_every_horizon():
    ann = mlp()
    x = torch.rand(16, 20)
    snn = convert(ann, x, balance="act-max", chunk=3)
    full = snn(x, 40)
    torch.testing.assert_close(full[9], snn(x, 10)[-1])  # the accumulated read-out at T=10 is the same
    y = ann(x).argmax(1)
    calls = []
    orig = snn.forward
    snn.forward = lambda *a: calls.append(a[1]) or orig(*a)
    r = evaluate_over_time(snn, [(x, y)], timesteps=[1, 2, 4, 8, 16, 32])
    assert calls == [32] and len(r["accuracy"]) == 6
    # the time convention: T from the call, else the network's own; neither is one clear error
    snn.forward = orig
    with pytest.raises(InputError, match="give timesteps"):
        snn(x)
    snn.timesteps = 10
    torch.testing.assert_close(snn(x), full[:10])
    assert snn.outputs(x).shape == (10, 16, full.shape[-1])


@pytest.mark.parametrize("signed", [False, True])
def test_time_major_and_layer_major_simulation_agree(signed):
    """One graph walk, two orders: chunk after chunk of steps through every layer (evaluation), or
    every image-step at one layer before the next (balancing, calibration).  Same read-out, same
    firing rates, at any chunk size and any cut of the images into pieces."""
    ann = _calibrate_bn(Residual(), (32, 3, 8, 8))
    x = torch.randn(24, 3, 8, 8)
    snn = convert(ann, x, balance="act-max", calibrate="none", signed=signed)
    T = 12
    rates = []
    outs = []
    for kwargs in [{"chunk": 1}, {"chunk": 5}, {"chunk": T}, {"samples_per_call": 4 * T}]:
        snn.reset_stats()
        if "samples_per_call" in kwargs:  # layer-major, in pieces of 4 images
            seen = []

            def plain(k, node, inputs, seen=seen):
                seen.append((k, len(inputs)))
                return simulate_layer(node, inputs, T)

            outs.append(simulate(snn, [x[:10], x[10:]], T, plain, **kwargs))
            assert seen == [(k, 7) for k in range(3)]  # 10 + 14 images in fours: 3 + 4 pieces
        else:
            outs.append(simulate(snn, x, T, **kwargs))
        rates.append(snn.firing_rates())
    assert outs[0].shape == (T, 24, 4)
    assert 0 < min(rates[0].values()) and max(rates[0].values()) < 1
    for out, r in zip(outs[1:], rates[1:], strict=True):
        torch.testing.assert_close(out, outs[0], rtol=1e-5, atol=1e-5)
        assert r == pytest.approx(rates[0])
    torch.testing.assert_close(snn(x, T), outs[0].cumsum(0), rtol=1e-5, atol=1e-5)  # forward = simulate
    with pytest.raises(InputError, match="timesteps must be >= 1"):
        simulate(snn, x, 0)


def test_default_pieces_keep_activations_near_the_budget_and_the_probe_leaves_no_trace(monkeypatch):
    """By default a CPU chunk holds as many steps as keep its largest IF input near PIECE_BYTES
    (larger tensors are mapped and page-faulted anew on every allocation); the one-image probe
    that measures the layers runs no neuron, so no recorder, statistic or state sees it."""
    import sys

    from rmpsnn.neurons import MembraneRecorder

    sim = sys.modules["rmpsnn.conversion.simulate"]
    ann = _calibrate_bn(Residual(), (32, 3, 8, 8))
    x = torch.randn(24, 3, 8, 8)
    snn = convert(ann, x, balance="act-max", calibrate="none")
    T = 6
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(i[0][0].nbytes)) for m in snn.if_nodes]
    snn.reset_stats()
    whole = simulate(snn, x, T, chunk=T)
    rates = snn.firing_rates()
    for h in hooks:
        h.remove()
    monkeypatch.setattr(sim, "PIECE_BYTES", max(sizes) * 24 * 2 + 1)  # 2 steps of 24 images
    snn.reset_stats()
    with MembraneRecorder(snn, detach=True) as rec:
        out = simulate(snn, x, T)
    assert [u.shape[:2] for u in rec.membranes] == [(2, 24)] * (3 * len(snn.if_nodes))
    torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-5)
    assert snn.firing_rates() == pytest.approx(rates)
    assert all(m.v is not None for m in snn.if_nodes)  # the state is the simulation's, not the probe's


def test_poisson_encoding_is_seeded_and_converges():
    ann = mlp()
    x = torch.rand(64, 20)
    y = ann(x).argmax(1)
    a = convert(ann, x, balance="act-max", encoding="poisson", seed=3)
    b = convert(ann, x, balance="act-max", encoding="poisson", seed=3)
    assert torch.equal(a(x, 16), b(x, 16))
    assert evaluate_over_time(a, (x, y), timesteps=[2048])["accuracy"][0] >= 0.85


def test_per_channel_thresholds_and_scale():
    ann = mlp()
    x = torch.rand(32, 20)
    snn = convert(ann, x, balance="act-max", per_channel=True, scale=0.5)
    th = snn.if_nodes[0].v_th
    assert th.shape == (32,)
    act_max = ann[1](ann[0](x)).amax(0)
    alive = act_max > 0
    torch.testing.assert_close(th[alive], act_max[alive] * 0.5)
    # a channel that never fires on the calibration data gets the layer's largest threshold
    assert torch.all(th[~alive] == th[alive].max())


def test_maxpool_is_spiking_by_default_or_replaced_with_a_warning_or_refused():
    ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    x = torch.randn(4, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snn = convert(ann, x, balance="act-max")
    assert any(isinstance(m, SpikingMaxPool) for m in snn.modules())
    with pytest.warns(UserWarning, match="max pooling replaced by average pooling"):
        convert(ann, x, balance="act-max", maxpool="avg")
    with pytest.raises(ConversionError, match=r"node '.*' \(call_module .*\): max pooling"):
        convert(ann, x, balance="act-max", maxpool="error")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)),
            r"Sigmoid cannot be converted.*use ReLU",
        ),
        (
            nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.LayerNorm(4), nn.Linear(4, 2)),
            "LayerNorm cannot be converted",
        ),
        (
            nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)),
            "BatchNorm is not directly",
        ),
        (nn.Sequential(nn.Linear(4, 2)), "no ReLU"),
    ],
)
def test_unconvertible_graphs_raise_naming_the_node(model, message):
    with pytest.raises(ConversionError, match=message):
        convert(model.eval(), torch.randn(4, 4), balance="act-max")


def test_untraceable_and_nonlinear_functions():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return F.relu(self.fc(x))
            return x

    with pytest.raises(ConversionError, match="could not trace"):
        convert(Dynamic(), torch.randn(2, 4), balance="act-max")

    class Exp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.exp(F.relu(self.fc(x)))

    with pytest.raises(ConversionError, match=r"node 'exp'.*not linear"):
        convert(Exp(), torch.randn(2, 4), balance="act-max")


def test_argument_errors():
    ann = mlp()
    with pytest.raises(ValueError, match="unknown balance"):
        convert(ann, torch.rand(2, 20), balance="max")
    with pytest.raises(ValueError, match="needs calibration_data"):
        convert(ann, balance="spike-max")
    with pytest.raises(ValueError, match="needs an ANN trained with QCFS"):
        convert(ann, balance="qcfs")
    with pytest.raises(ValueError, match="unknown encoding"):
        convert(ann, torch.rand(2, 20), balance="act-max", encoding="latency")


def test_converter_does_not_modify_the_ann():
    ann = _calibrate_bn(Residual(), (8, 3, 8, 8))
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(ann, torch.randn(8, 3, 8, 8), balance="act-max")
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())


def test_converted_layers_are_if_neurons_and_neuron_tools_work_on_them():
    """IFNode is the ordinary IF neuron: MembraneRecorder, reset_states and state dicts (old key
    'threshold' included) work on a converted network; numeric v_init is a fraction of θ."""
    from rmpsnn.neurons import IF, MembraneRecorder, reset_states

    ann = mlp().eval()
    x = torch.rand(16, 20)
    snn = convert(ann, x, balance="act-max", calibrate="none")
    assert all(isinstance(m, IF) and m.tau == 1.0 and m.reset == "soft" for m in snn.if_nodes)
    with MembraneRecorder(snn, detach=True) as rec:
        snn(x, 6)
    assert [tuple(u.shape) for u in rec.membranes] == [(6, 16, 32), (6, 16, 32)]  # one chunk of 6 steps
    reset_states(snn)
    assert all(m.v is None for m in snn.if_nodes)
    state = snn.state_dict()
    old = {k.replace(".v_th", ".threshold"): v for k, v in state.items()}
    twin = convert(ann, x, balance="act-max", calibrate="none", scale=0.5)
    twin.load_state_dict(old)
    assert torch.equal(twin(x, 8), snn(x, 8))
    half = convert(ann, x, balance="act-max", calibrate="none", v_init="half", signed=False)
    assert not torch.equal(snn(x, 8), half(x, 8))
    for node in snn.if_nodes:
        node.v_init = 0.5  # a fraction of θ: here θ/2, whatever θ is
    assert snn.if_nodes[0].v_init == 0.5 and torch.equal(snn(x, 8), half(x, 8))
    node = snn.if_nodes[0]
    with pytest.warns(DeprecationWarning, match="use v_th"):  # the old name still reads ...
        assert node.threshold is node.v_th
    with pytest.warns(DeprecationWarning, match="set_threshold"):  # ... and writes, checked
        node.threshold = torch.tensor(0.25)
    assert float(node.v_th) == 0.25
    with pytest.raises(ValueError, match="threshold"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        node.threshold = torch.tensor(-1.0)


def test_balancing_methods_are_pluggable():
    from rmpsnn.conversion import available_balancers, available_calibrations, register_balancer
    from rmpsnn.conversion.observers import ActivationObserver, ann_view

    assert {"mse", "spike-max", "act-max", "percentile", "qcfs", "none"} <= set(available_balancers())
    assert {"bias", "none"} <= set(available_calibrations())
    seen = {}

    @register_balancer("act-mean-test")
    def act_mean(snn, ctx):  # twice the mean ANN activation, from observers
        seen["per_channel"], seen["batches"] = ctx.per_channel, len(ctx.batches)
        with ann_view(snn, lambda node: ActivationObserver(node.ann_activation, "mean")) as observers:
            for x in ctx.batches:
                snn.graph_module(x)
        return [2 * obs.mean.value().mean() for obs in observers]

    ann = mlp().eval()
    x = torch.rand(32, 20)
    snn = convert(ann, [x[:16], x[16:]], balance="act-mean-test", calibrate="none", scale=0.5)
    assert seen == {"per_channel": False, "batches": 2}
    h, expected = x, []
    for layer in ann:
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            expected.append(2 * h.mean(0).mean() * 0.5)
    for m, th in zip(snn.if_nodes, expected, strict=True):
        torch.testing.assert_close(m.v_th, th.detach())
    with pytest.raises(
        ValueError, match=r"unknown balance 'zzz-unknown'; valid values: auto, .*act-mean-test"
    ):
        convert(ann, x, balance="zzz-unknown")

    @register_balancer("too-few-test", needs_data=False)
    def too_few(snn, ctx):
        return [torch.tensor(1.0)]

    with pytest.raises(ConversionError, match="returned 1 thresholds for 2 IF layers"):
        convert(ann, balance="too-few-test", calibrate="none")


class _DimOp(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)
        self.op = op

    def forward(self, x):
        h = F.relu(self.conv(x))
        if self.op == "mean":  # mixes the samples (and, folded, the time steps)
            return self.fc(h.mean(-4).mean((-2, -1)))
        if self.op == "transpose":
            h = h.transpose(-4, -3).transpose(-4, -3)
        elif self.op == "cat":
            h = torch.cat([h, h], dim=-4)
        elif self.op == "cat_ok":
            h = torch.cat([h, h], dim=-3)[:, :4]
        return self.fc(h.mean((-2, -1)))


@pytest.mark.parametrize("op", ["mean", "transpose", "cat"])
def test_negative_dims_are_resolved_before_the_batch_dim_guard(op):
    x = torch.randn(8, 3, 6, 6)
    with pytest.raises(ConversionError, match="dim 0"):
        convert(_DimOp(op).eval(), x, balance="act-max", calibrate="none")


def test_negative_dims_that_are_not_dim_0_convert():
    x = torch.randn(8, 3, 6, 6)
    snn = convert(_DimOp("cat_ok").eval(), x, balance="act-max", calibrate="none")
    assert snn(x, 4).shape == (4, 8, 2)


@pytest.mark.parametrize("v_init", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_v_init_is_refused(v_init):
    with pytest.raises(InputError, match="v_init must be a finite"):
        convert(mlp(), torch.rand(8, 20), v_init=v_init)


def test_inputs_the_network_cannot_take_are_refused_saying_what_it_expects():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.randn(8, 3, 8, 8)
    with pytest.raises(InputError, match=r"calibration_data has shape \(8, 1, 8, 8\).*takes 3 channels"):
        convert(ann, x[:, :1], balance="act-max")
    with pytest.raises(InputError, match=r"calibration_data has dtype torch\.uint8.*floating-point"):
        convert(ann, (x * 50).clamp(0, 255).to(torch.uint8), balance="act-max")
    snn = convert(ann, x, balance="act-max")
    for bad, message in (
        (x.to(torch.uint8), r"dtype torch.uint8.*\[B, C, H, W\]"),
        (x.double(), r"torch.float64 but the network's weights are torch.float32"),
        (x[0], r"shape \(3, 8, 8\); the network takes a batch \[B, C, H, W\]"),
        (x.unsqueeze(0), r"shape \(1, 8, 3, 8, 8\)"),
    ):
        with pytest.raises(InputError, match=message):
            snn(bad, 4)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        snn(nan, 4)


def test_first_within_is_the_first_T_from_which_the_snn_stays_in_the_band():
    from rmpsnn.conversion import first_within

    r = {"timesteps": [1, 2, 4, 8, 16], "accuracy": [0.5, 0.795, 0.70, 0.792, 0.80]}
    assert first_within(r, 0.80, 0.01) == 8  # T = 2 touches the band but T = 4 leaves it
    assert first_within({**r, "accuracy": [0.5, 0.8, 0.8, 0.8, 0.7]}, 0.80) is None
    assert first_within({**r, "accuracy": [0.8] * 5}, 0.80) == 1


def test_outputs_are_in_the_ann_units_for_a_regression_head():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    x = torch.randn(64, 6)
    snn = convert(ann, x)
    with torch.no_grad():
        target = ann(x)  # two regression values per input
    y = snn.outputs(x, 256)
    assert y.shape == (256, 64, 2)
    torch.testing.assert_close(y[-1] * 256, snn(x, 256)[-1])
    err = [float((y[t - 1] - target).abs().mean()) for t in (4, 32, 256)]
    assert err[2] < err[0] and err[2] < 0.05 * float(target.abs().mean()), err


@pytest.mark.parametrize("balance", ["spike-max", "act-max", "percentile", "mse"])
def test_auto_calibration_only_for_mse_thresholds(balance):
    ann = mlp().eval()
    x = torch.rand(32, 20)
    auto = convert(ann, x, balance=balance)
    assert (auto.calibration is not None) == (balance == "mse")
    if balance != "mse":  # exactly the uncalibrated conversion: never worse at any T
        none = convert(ann, x, balance=balance, calibrate="none")
        assert (auto.if_nodes[0].v_init, auto.signed) == (none.if_nodes[0].v_init, none.signed)
        torch.testing.assert_close(auto(x, 32), none(x, 32))
