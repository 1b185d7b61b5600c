"""The neuron core that grows: registered kinds, the reference step as ground truth for every
kernel's values and gradients (input, learnable tau), thresholds carried to RMP-Loss, and the
input checks of issues 26/28."""

from __future__ import annotations

import math

import pytest
import torch

from rmpsnn.errors import InputError, NonFiniteError
from rmpsnn.functional import if_multistep, lif_multistep, lif_multistep_state, signed_if_multistep
from rmpsnn.functional.reference import LIF_SPEC, Firing, run_reference
from rmpsnn.losses import quantization_error, rmp_loss
from rmpsnn.models import create
from rmpsnn.neurons import LIF, NEURONS, PLIF, MembraneRecorder, SynapticLIF
from rmpsnn.surrogate import get as get_surrogate


def _reference(x, tau, v_th, reset, sg, v_init=None):
    sample = x.shape[1:]
    from rmpsnn.functional.params import as_param

    p = {
        "tau": as_param(tau, sample, "tau", x).bcast,
        "v_th": as_param(v_th, sample, "v_th", x).bcast,
        "reset": reset,
    }
    state = (as_param(v_init, sample, "v_init", x).bcast,) if v_init is not None else None
    return run_reference(LIF_SPEC, x, p, state, Firing(get_surrogate(sg)))


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("sg", ["inflor", "sigmoid", "triangle"])
@pytest.mark.parametrize("tau_shape", ["scalar", "channel", "neuron"])
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_kernels_match_reference_autograd_with_learnable_tau(reset, sg, tau_shape, backend):
    """Values, input gradient and the learnable leak's gradient of each implementation equal
    autograd through the reference step."""
    torch.manual_seed(0)
    x0 = torch.randn(5, 2, 3, 4) * 0.6 + 0.3
    tau0 = {
        "scalar": torch.tensor(0.4),
        "channel": torch.tensor([0.2, 0.5, 0.9]),
        "neuron": torch.rand(3, 4) * 0.9 + 0.05,
    }[tau_shape]
    v0 = torch.rand(3, 4) * 0.3
    out = {}
    for name in ("ref", backend):
        x = x0.clone().requires_grad_(True)
        tau = tau0.clone().requires_grad_(True)
        if name == "ref":
            spikes, upre, (ulast,) = _reference(x, tau, 0.5, reset, sg, v_init=v0)
        else:
            spikes, upre, ulast = lif_multistep_state(
                x,
                tau=tau,
                v_th=0.5,
                reset=reset,
                surrogate=sg,
                v_init=v0,
                backend=backend,
                need_membrane=True,
            )
        w = torch.randn_like(spikes, generator=torch.Generator().manual_seed(1))
        ((spikes * w).sum() + (upre * 0.3).sum() + ulast.sum() * 0.1).backward()
        out[name] = (spikes.detach(), upre.detach(), x.grad, tau.grad)
    for a, b in zip(out["ref"], out[backend], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_constant_parameter_paths_match_reference_autograd(reset, backend, detach_reset):
    """The hand-written BPTT (PyTorch loop and fused kernel) of a constant-parameter LIF equals
    autograd through the reference step, per-channel threshold and v_init gradient included."""
    torch.manual_seed(4)
    x0 = torch.randn(5, 2, 3, 4) * 0.6 + 0.3
    th = torch.tensor([0.4, 0.5, 0.7])
    v00 = torch.rand(3, 4) * 0.3
    out = {}
    for name in ("ref", backend):
        x, v0 = x0.clone().requires_grad_(True), v00.clone().requires_grad_(True)
        if name == "ref":
            from rmpsnn.functional.params import as_param

            p = {"tau": torch.tensor(0.3), "v_th": as_param(th, x.shape[1:], "v_th", x).bcast, "reset": reset}
            fire = Firing(get_surrogate("inflor"), detach_reset)
            spikes, upre, (last,) = run_reference(LIF_SPEC, x, p, (v0,), fire)
        else:
            spikes, upre, last = lif_multistep_state(
                x, tau=0.3, v_th=th, reset=reset, v_init=v0, detach_reset=detach_reset,
                backend=backend, need_membrane=True,
            )  # fmt: skip
        w = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(5))
        ((spikes * w).sum() + (upre * 0.2).sum() + last.sum() * 0.4).backward()
        out[name] = (spikes.detach(), upre.detach(), last.detach(), x.grad, v0.grad)
    for a, b in zip(out["ref"], out[backend], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("storage", ["auto", "float32"])
def test_fused_leak_gradient_without_recorded_membranes(storage):
    """Without u_pre returned (compact storage would apply), the fused leak gradient still equals
    the reference: the kernel keeps float membranes when it needs u[t-1]."""
    torch.manual_seed(2)
    x0 = torch.randn(6, 3, 5) * 0.7 + 0.3
    grads = []
    for name in ("ref", "cpu"):
        x, tau = x0.clone().requires_grad_(True), torch.tensor(0.6, requires_grad=True)
        if name == "ref":
            spikes, _, (last,) = _reference(x, tau, 0.5, "hard", "inflor")
        else:
            spikes, _, last = lif_multistep_state(x, tau=tau, backend="cpu", membrane_storage=storage)
        (spikes.sum() + 0.3 * last.sum()).backward()
        grads.append((x.grad, tau.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_plif_runs_fused_and_its_tau_moves():
    """PLIF (tau = sigmoid(w)) uses the fused CPU kernel and trains its leak."""
    from rmpsnn.functional.neuron import selected_backend

    assert selected_backend(torch.zeros(2, 2, 3), features={"tau_grad"}) == "cpu"
    torch.manual_seed(0)
    model = create("cpu_net", neuron="plif", width=(8, 8, 8), image_size=8, timesteps=2)
    plifs = [m for m in model.modules() if isinstance(m, PLIF)]
    assert len(plifs) == 3
    before = [float(m.leak().detach()) for m in plifs]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(abs(float(m.leak().detach()) - b) > 1e-4 for m, b in zip(plifs, before, strict=True))


def test_learnable_threshold_gets_the_reference_gradient():
    torch.manual_seed(0)
    x = (torch.randn(4, 2, 6) * 0.7 + 0.4).requires_grad_(True)
    m = LIF(learnable_threshold=True, v_th=torch.full((6,), 0.5))
    m(x).sum().backward()
    th = torch.full((6,), 0.5, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    spikes, _, _ = _reference(x2, 0.25, th, "hard", "inflor")
    spikes.sum().backward()
    torch.testing.assert_close(m.v_th.grad, th.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_registry_and_create_take_names_and_callables():
    for name in ("lif", "if", "plif", "lif-learnable-threshold", "if-learnable-threshold", "synaptic"):
        assert name in NEURONS
        model = create("cpu_net", neuron=name, width=(4, 4, 4), image_size=8, timesteps=2)
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(InputError, match="did you mean 'plif'"):
        create("cpu_net", neuron="plf")


def test_synaptic_lif_has_two_states_and_matches_its_equations():
    x = torch.rand(6, 1, 3) * 0.4
    m = SynapticLIF(tau=0.5, alpha=0.5, v_th=0.5)
    spikes = m(x)
    i = u = torch.zeros(1, 3)
    for t in range(6):
        i = 0.5 * i + x[t]
        v = 0.5 * u + i
        o = (v >= 0.5).float()
        torch.testing.assert_close(spikes[t], o)
        u = v * (1 - o)


def test_rmp_loss_uses_the_recorded_non_default_and_learnable_thresholds():
    """The recorder carries each layer's own threshold; RMP-Loss's target flips at it."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(LIF(v_th=0.8), LIF(learnable_threshold=True, v_th=torch.tensor([0.3, 0.9])))
    x = torch.rand(3, 2, 2) * 1.2
    with MembraneRecorder(net) as rec:
        net(x)
    assert len(rec.thresholds) == len(rec.membranes) == 2
    assert float(rec.thresholds[0]) == pytest.approx(0.8)
    assert rec.thresholds[1].requires_grad
    expected = []
    for u, th in zip(rec.membranes, (0.8, torch.tensor([0.3, 0.9])), strict=True):
        d = torch.where(u >= th, 1 - u, -u)
        expected.append(d.pow(2))
    total = sum(e.sum() for e in expected) / sum(e.numel() for e in expected)
    torch.testing.assert_close(rmp_loss(rec.membranes, rec.thresholds), total.detach().to(total.dtype))
    assert rmp_loss(rec.membranes, 0.5).item() != pytest.approx(total.item())
    q = quantization_error(rec.membranes, rec.thresholds)
    assert q["mean_sq"] == pytest.approx(total.item(), rel=1e-5)
    with pytest.raises(InputError, match="2 membranes"):
        rmp_loss(rec.membranes, [0.5])


def test_nan_and_overflow_are_refused_with_the_argument_named():
    x = torch.rand(3, 2, 4)
    with pytest.raises(InputError, match="v_init"):
        lif_multistep(x, v_init=math.nan)
    with pytest.raises(NonFiniteError, match="signed_if_multistep"):
        signed_if_multistep(torch.full((3, 4), math.nan))
    with pytest.raises(NonFiniteError, match="overflow"):
        lif_multistep(torch.full((3, 2, 4), 3e38), backend="cpu")
    with pytest.raises(NonFiniteError, match="overflow"):
        lif_multistep(torch.full((3, 2, 4), 3e38), backend="torch")
    with pytest.raises(InputError, match="if_multistep") as info:
        if_multistep(torch.zeros(4))
    assert "lif_multistep" not in str(info.value)
    with pytest.raises(InputError, match="v_th must be a number"):
        LIF(v_th="a")


def test_rank2_multistep_input_names_the_layout_and_single_step_still_works():
    with pytest.raises(InputError, match=r"\[T, B, \.\.\.\]"):
        LIF()(torch.rand(4, 10))
    m = LIF(step_mode="single")
    assert m(torch.rand(4, 10)).shape == (4, 10)


def test_nir_exports_trained_plif_and_refuses_the_synaptic_neuron_by_name():
    pytest.importorskip("nir")
    from rmpsnn.errors import NIRExportError
    from rmpsnn.export.nir import to_nir
    from rmpsnn.layers import TimeFolded

    def stack(neuron):
        return torch.nn.Sequential(
            TimeFolded(torch.nn.Linear(4, 3)), neuron, TimeFolded(torch.nn.Linear(3, 2)), LIF()
        )

    net = stack(PLIF(tau=0.3, channels=3))
    with torch.no_grad():
        net[1].w.copy_(torch.tensor([0.0, 1.0, -1.0]))  # "trained" leaks: sigmoid(w)
    x = torch.rand(3, 2, 4)
    graph = to_nir(net, x)
    beta = torch.sigmoid(torch.tensor([0.0, 1.0, -1.0])).double().numpy()
    assert graph.nodes["1"].tau == pytest.approx(1 / (1 - beta), rel=1e-5)  # dt = 1
    with pytest.raises(NIRExportError, match="SynapticLIF"):
        to_nir(stack(SynapticLIF()), x)
