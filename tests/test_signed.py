"""Signed IF neurons with memory (Wang et al. 2022) in converted networks: the count tracks the
quantised activation, calibration and the layer-major runner handle negative spikes, and the
default conversion uses them where they help."""

import pytest
import torch
from torch import nn

from rmpsnn.conversion import convert
from rmpsnn.errors import InputError, NIRExportError
from rmpsnn.export import to_nir
from rmpsnn.functional import if_multistep, signed_if_multistep
from rmpsnn.models.qcfs import QCFS
from rmpsnn.neurons import MembraneRecorder

from .test_calibration import _blobs, train_mlp


def test_the_count_is_the_floor_of_the_charge_and_never_negative():
    torch.manual_seed(0)
    x = torch.randn(40, 500) * 0.6
    theta = 0.8
    spikes, v, n = signed_if_multistep(x, theta, v_init=theta / 2)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.allclose(n, spikes.sum(0)) and (spikes.cumsum(0) >= 0).all()  # never below zero
    charge = theta / 2 + x.sum(0)
    torch.testing.assert_close(n * theta + v, charge, rtol=0, atol=1e-4)  # n θ + v = v0 + Σx
    # the count is the shifted, clipped quantisation of the charge, except where the one spike per
    # step has not caught up with a large last input yet
    expected = torch.floor(charge / theta).clamp(min=0)
    assert (n == expected).float().mean() > 0.9 and (n - expected).abs().max() <= 2
    # a late negative input takes the spikes of an early positive one back; plain IF keeps them
    late = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert signed_if_multistep(late, 1.0)[2].item() == 0.0
    assert if_multistep(late, v_th=1.0).sum().item() == 2.0
    # chunks carry the potential and the count: 4 + 4 steps equal 8 steps
    a = signed_if_multistep(x[:4], theta)
    b = signed_if_multistep(x[4:8], theta, v_init=a[1], count_init=a[2])
    whole = signed_if_multistep(x[:8], theta)
    assert torch.equal(torch.cat([a[0], b[0]]), whole[0]) and torch.equal(b[2], whole[2])
    upre = signed_if_multistep(x[:3], theta, return_membrane=True)[3]
    torch.testing.assert_close(upre[0], x[0])


@pytest.mark.parametrize(
    "shape, theta",
    [
        ((9, 3, 10), 0.7),  # a scalar threshold
        ((12, 4, 6, 5, 5), "per-channel"),  # [1, C, 1, 1], as IFNode gives it
        ((5, 2, 4, 3, 3), "per-neuron"),  # one threshold per neuron of a sample
        ((6, 3, 5000), 0.4),  # more neurons than one block of the kernel
    ],
)
def test_the_fused_kernel_gives_the_reference_loops_bits(shape, theta):
    """The numba kernel (the default on float32 CPU tensors) and the PyTorch loop agree exactly:
    spikes, final potential and count, and the recorded membrane -- from a given start."""
    from rmpsnn.functional.kernels import numba_available

    if not numba_available():
        pytest.skip("numba is not installed")
    torch.manual_seed(0)
    x = torch.randn(shape)
    if theta == "per-channel":
        theta = torch.rand(1, shape[2], 1, 1) + 0.5
    elif theta == "per-neuron":
        theta = torch.rand(shape[2:]) + 0.2
    v0 = torch.rand(shape[1:]) * 0.3
    n0 = torch.randint(0, 3, shape[1:]).float()
    ref = signed_if_multistep(x, theta, v_init=v0, count_init=n0, return_membrane=True, backend="torch")
    fused = signed_if_multistep(x, theta, v_init=v0, count_init=n0, return_membrane=True, backend="cpu")
    assert (ref[0] != 0).any() and (ref[0] < 0).any()  # both signs of spike occur
    for a, b in zip(ref, fused, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="float32 CPU tensor"):
        signed_if_multistep(x.double(), 0.5, backend="cpu")
    assert signed_if_multistep(x.double(), 0.5)[0].dtype == torch.float64  # the loop runs other dtypes


def test_a_qcfs_layer_converts_exactly_at_t_equal_to_its_levels():
    """One QCFS hidden layer with L levels, θ = λ and θ/2 start: the SNN's mean output over
    T = L steps is the ANN's output."""
    torch.manual_seed(1)
    L = 4
    ann = nn.Sequential(nn.Linear(8, 16), QCFS(L, 2.0), nn.Linear(16, 3)).eval()
    x = torch.randn(64, 8)
    snn = convert(ann, x)
    assert snn.signed and snn.balance == "qcfs" and snn.if_nodes[0].v_init == "half"
    torch.testing.assert_close(snn(x, L)[-1] / L, ann(x), rtol=1e-5, atol=1e-5)


def _qcfs_mlp(levels):
    """A QCFS MLP (3 hidden layers) trained briefly on the blobs of the calibration tests."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(32, 128), QCFS(levels), nn.Linear(128, 128), QCFS(levels), nn.Linear(128, 64), QCFS(levels),
        nn.Linear(64, 10),
    )  # fmt: skip
    x, y = _blobs(4000, 1)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for i in range(300):
        idx = torch.arange(i * 100, i * 100 + 100) % len(x)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_signed_neurons_track_a_deep_qcfs_network_at_t_equal_to_its_levels():
    L = 4
    net = _qcfs_mlp(L)
    calib, _ = _blobs(256, 2)
    x, _ = _blobs(1000, 3)
    ref = net(x)
    snn = convert(net, calib)  # the default for a QCFS ANN: λ thresholds, θ/2, signed
    plain = convert(net, calib, signed=False)
    assert snn.signed and not plain.signed and all(m.signed for m in snn.if_nodes)
    err = {
        name: (s(x, L)[-1] / L - ref).abs().mean().item() for name, s in (("signed", snn), ("plain", plain))
    }
    assert err["signed"] < 0.7 * err["plain"], err  # late negative input no longer over-counts


def test_which_conversions_get_signed_neurons():
    net = train_mlp()
    calib, _ = _blobs(64, 2)
    assert convert(net, calib).signed  # the default: soft reset, θ/2 start
    assert not convert(net, calib, balance="spike-max", calibrate="none").signed  # RMP-SNN as published
    assert not convert(net, calib, reset="hard").signed
    assert not convert(net, calib, v_init=None).signed
    with pytest.raises(InputError, match=r"signed neurons .* need reset='soft'"):
        convert(net, calib, reset="hard", signed=True)
    with pytest.raises(InputError, match="signed must be True, False or 'auto'"):
        convert(net, calib, signed="yes")


def test_signed_layers_are_monitored_and_refused_by_nir():
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = torch.randn(16, 6)
    snn = convert(net, x)
    with MembraneRecorder(snn, detach=True) as rec:
        out = snn(x, 5)
    assert out.shape == (5, 16, 2) and [tuple(u.shape) for u in rec.membranes] == [(5, 16, 8)]
    assert 0 <= snn.if_nodes[0].firing_rate <= 1
    with pytest.raises(NIRExportError, match=r"signed IF neurons .* signed=False"):
        to_nir(snn, x[:1], timesteps=5)
