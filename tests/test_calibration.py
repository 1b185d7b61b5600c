"""Post-conversion calibration, MSE thresholds and layer-major spike-max balancing."""

import pytest
import torch
from torch import nn

from rmpsnn.conversion import convert, evaluate_over_time
from rmpsnn.conversion.calibrate import ann_activation_means
from rmpsnn.models import create

from .test_conversion import output_sums


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, 32, generator=torch.Generator().manual_seed(99)) * 0.45
    y = torch.randint(0, 10, (n,), generator=g)
    return centres[y] + torch.randn(n, 32, generator=g), y


@pytest.fixture(scope="module")
def trained_mlp():
    return train_mlp()


def train_mlp():
    """A small ReLU MLP trained on 10 overlapping Gaussian blobs (fixed seed)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )  # fmt: skip
    x, y = _blobs(4000, 1)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for i in range(400):
        idx = torch.arange(i * 100, i * 100 + 100) % len(x)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _accuracy(snn, data, T):
    return evaluate_over_time(snn, data, timesteps=[T])["accuracy"][0]


def test_calibration_improves_accuracy_at_few_timesteps(trained_mlp):
    calib, _ = _blobs(256, 2)
    test = _blobs(2000, 3)
    ann_acc = (trained_mlp(test[0]).argmax(1) == test[1]).float().mean().item()
    plain = convert(trained_mlp, calib, balance="spike-max", calibrate="none")  # RMP-SNN
    default = convert(trained_mlp, calib)  # mse thresholds, θ/2 start, bias correction
    assert default.calibration is not None and plain.calibration is None
    for T in (4, 8):
        a_plain, a_default = _accuracy(plain, test, T), _accuracy(default, test, T)
        assert a_default > a_plain + 0.05, (T, a_plain, a_default)
    assert _accuracy(default, test, 32) >= ann_acc - 0.02


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_calibrated_rates_match_ann_activation_means(trained_mlp, reset, per_channel):
    """After bias correction, each layer's mean rate·θ per channel over the calibration horizon
    equals the ANN's mean activation (what the correction targets), far closer than before."""
    calib, _ = _blobs(128, 4)
    T = 16
    targets = ann_activation_means(convert(trained_mlp, calib, calibrate="none"), [calib])
    with torch.no_grad():  # the same targets straight from the ANN's ReLUs
        h, direct = calib, []
        for layer in trained_mlp:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                direct.append(h.mean(0))
    for a, b in zip(targets, direct, strict=True):
        torch.testing.assert_close(a, b)
    snn = convert(trained_mlp, calib, reset=reset, per_channel=per_channel, calibration_timesteps=T)
    sums = output_sums(snn, calib, T)
    for m, s, target, layer in zip(snn.if_nodes, sums, targets, snn.calibration["layers"], strict=True):
        mean_rate = (s / T).mean(0)  # rate·θ per channel, averaged over the images
        err = (mean_rate - target).abs().mean().item()
        assert err < 0.03 * target.mean().item() + 1e-3, (m.layer_name, err)
        assert layer["error_after"] <= layer["error_before"]
    # the first layer's correction went into the Linear in front of it, not into the node
    assert all(m.bias is None for m in snn.if_nodes)


def test_calibration_folds_into_residual_branches_and_convs():
    torch.manual_seed(0)
    model = create("ann_resnet20", num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))
    model.eval()
    x = torch.randn(8, 3, 32, 32)
    snn = convert(model, x, calibration_timesteps=4)
    assert len(snn.calibration["layers"]) == len(snn.if_nodes) == 19
    # every IF node of ResNet-20 is fed by a conv or by (conv branch + shortcut): all folded
    assert all(m.bias is None for m in snn.if_nodes)
    assert snn(x, 4).shape == (4, 8, 10)


def test_unfoldable_correction_stays_in_the_node():
    """An IF fed by average pooling has no bias in front: the node keeps the correction."""
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(36, 2)
    )  # fmt: skip
    x = torch.randn(16, 3, 8, 8)
    snn = convert(ann, x, calibration_timesteps=8)
    assert snn.if_nodes[0].bias is None and snn.if_nodes[1].bias is not None
    assert snn.if_nodes[1].bias.shape == (4,)


def test_spike_max_in_one_layer_major_pass_equals_layer_by_layer_simulation(trained_mlp):
    """Spike-max thresholds from the single layer-major simulation equal the original procedure:
    for each layer in order, simulate the whole network (earlier layers already balanced) and
    take the largest input current that layer receives."""
    calib, _ = _blobs(64, 5)
    T = 24
    fast = convert(trained_mlp, calib, balance="spike-max", calibrate="none", balance_timesteps=T)
    ref = convert(trained_mlp, calib, balance="spike-max", calibrate="none", balance_timesteps=T)
    nodes = ref.if_nodes
    for node in nodes:
        seen: list[torch.Tensor] = []
        h = node.register_forward_pre_hook(lambda _m, inp, seen=seen: seen.append(inp[0].max()))
        node.set_threshold(1e9)  # not yet balanced: whatever it is does not matter
        ref(calib, T)
        h.remove()
        node.set_threshold(torch.stack(seen).max())
    for a, b in zip(fast.if_nodes, nodes, strict=True):
        torch.testing.assert_close(a.v_th, b.v_th, rtol=1e-5, atol=1e-6)


def test_mse_thresholds_lie_below_the_max_and_shrink_with_fewer_steps(trained_mlp):
    calib, _ = _blobs(128, 6)
    kw = {"balance": "mse", "calibrate": "none", "per_channel": False}
    few = convert(trained_mlp, calib, calibration_timesteps=4, **kw)
    many = convert(trained_mlp, calib, calibration_timesteps=256, **kw)
    act_max = convert(trained_mlp, calib, balance="act-max", calibrate="none")
    for f, m, a in zip(few.if_nodes, many.if_nodes, act_max.if_nodes, strict=True):
        assert 0 < float(f.v_th) < float(m.v_th) <= float(a.v_th) + 1e-6


@pytest.mark.parametrize("T", [1, 4, 32])
def test_mse_error_curve_equals_quantising_every_sample(T):
    # The prefix-sum form must give the same curve as rounding each sample for each θ,
    # ties (a sample exactly on a rounding edge) included.
    import numpy as np

    from rmpsnn.conversion.balancing import _quantisation_mse

    rng = np.random.default_rng(T)
    a = np.sort(np.concatenate([rng.exponential(1.0, 3000), [0.5, 1.0, 2.0]]))
    thetas = a[-1] * np.linspace(0.01, 1.0, 50)
    thetas[0] = 2.0 * T / (2 * 1 + 1)  # puts a = 1.0 exactly on the edge between levels 1, 2
    levels = np.clip(np.floor(a[None, :] * (T / thetas[:, None]) + 0.5), 0, T)
    brute = ((a[None, :] - levels * (thetas[:, None] / T)) ** 2).mean(axis=1)
    np.testing.assert_allclose(_quantisation_mse(a, thetas, T), brute, rtol=1e-9, atol=1e-12)


def test_progress_lines_and_defaults(trained_mlp):
    calib, _ = _blobs(32, 7)
    lines = []
    snn = convert(
        trained_mlp, calib, balance="spike-max", calibrate="bias", balance_timesteps=8, progress=lines.append
    )
    assert len(lines) == 2 * len(snn.if_nodes)  # one per layer for balancing and for calibration
    assert lines[0].startswith("spike-max balancing: layer 1/3")
    assert lines[-1].startswith("bias calibration: layer 3/3")
    assert snn.balance == "spike-max" and all(m.v_init == "half" for m in snn.if_nodes)
    assert all(m.v_th.ndim == 0 for m in snn.if_nodes)  # spike-max stays per layer
    assert all(m.v_th.ndim == 1 for m in convert(trained_mlp, calib).if_nodes)  # mse: per channel
    rmp = convert(trained_mlp, calib, balance="spike-max", calibrate="none")
    assert all(m.v_init is None for m in rmp.if_nodes)  # RMP-SNN: membranes start at 0
    auto = convert(trained_mlp, calib, balance="spike-max")  # auto: no calibration for spike-max
    assert auto.calibration is None and all(m.v_init is None for m in auto.if_nodes) and not auto.signed


def test_calibration_errors(trained_mlp):
    with pytest.raises(ValueError, match="unknown calibrate 'light'"):
        convert(trained_mlp, torch.randn(4, 32), calibrate="light")
    with pytest.raises(ValueError, match="calibration_data is empty"):
        convert(trained_mlp, torch.randn(0, 32))
    with pytest.raises(ValueError, match="NaN or inf"):
        convert(trained_mlp, torch.full((4, 32), float("nan")))
    with pytest.raises(ValueError, match="calibration_timesteps must be an integer >= 1"):
        convert(trained_mlp, torch.randn(4, 32), calibration_timesteps=0)
    with pytest.raises(ValueError, match="needs calibration_data"):
        convert(trained_mlp)
    with pytest.raises(ValueError, match="needs an ANN trained with QCFS"):
        convert(trained_mlp, balance="qcfs")


def test_qcfs_networks_convert_as_published_by_default():
    from rmpsnn.models import QCFS

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(8, 16), QCFS(levels=4, threshold=1.5), nn.Linear(16, 3))
    x = torch.randn(32, 8)
    snn = convert(ann, x)  # data given, but a QCFS net keeps its trained λ and is not calibrated
    assert snn.balance == "qcfs" and snn.calibration is None and snn.if_nodes[0].v_init == "half"
    assert convert(ann, x, calibrate="bias").calibration is not None  # on request


def test_evaluation_reports_progress_and_warns_before_a_long_run(trained_mlp):
    calib, _ = _blobs(32, 8)
    x, y = _blobs(400, 9)
    snn = convert(trained_mlp, calib)
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 400, 100)]
    lines = []
    with pytest.warns(UserWarning, match=r"simulating 400 images for T=8 steps will take about .* min"):
        r = evaluate_over_time(
            snn, batches, timesteps=[8], progress=lines.append, total_images=400, warn_after_s=0.0
        )
    assert r["images"] == 400
    assert lines[0].startswith("simulating T=8: 100/400 images") and "left" in lines[0]
    assert lines[-1].startswith("simulating T=8: 400/400 images") and len(lines) == 4
