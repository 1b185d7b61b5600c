import pytest
import torch
from torch import nn

from rmpsnn.layers import TimeFolded
from rmpsnn.neurons import IF, LIF, MembraneRecorder, OutputIntegrator, reset_states

from .conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: LIF(backend=b),
        lambda b: IF(v_th=torch.tensor([0.3, 0.6, 0.9]), backend=b),
        lambda b: LIF(reset="soft", v_init="half", backend=b),
    ],
)
def test_single_step_equals_multi_step(backend, make):
    x = torch.randn(7, 2, 3, 4) * 0.8 + 0.3
    multi = make(backend)
    single = make(backend)
    single.step_mode = "single"
    xm = x.clone().requires_grad_()
    xs = x.clone().requires_grad_()
    ym = multi(xm)
    ys = torch.stack([single(xs[t]) for t in range(7)])
    assert torch.equal(ym, ys)
    w = torch.randn_like(ym)
    (ym * w).sum().backward()
    (ys * w).sum().backward()  # BPTT through the carried state gives the same gradient
    torch.testing.assert_close(xs.grad, xm.grad, atol=1e-5, rtol=1e-4)
    single.reset_state()
    assert single.v is None


def test_carry_state_chunks_equal_one_run():
    x = torch.randn(12, 3, 8)
    full = IF(v_th=0.7)(x)
    chunked = IF(v_th=0.7, carry_state=True)
    parts = [chunked(x[i : i + 4]) for i in range(0, 12, 4)]
    assert torch.equal(torch.cat(parts), full)
    reset_states(chunked)
    assert chunked.v is None


def test_detach_state_truncates_backprop_through_time_between_chunks():
    """Truncated BPTT on a long stream: the carried potential keeps its value, and the gradient of
    a chunk's loss stops at the chunk boundary."""
    x = torch.randn(8, 2, 5, requires_grad=True)
    lif = LIF(carry_state=True, tau=0.9, v_th=0.3)
    first = lif(x[:4])
    carried = lif.v.clone()
    lif.detach_state()
    assert torch.equal(lif.v, carried) and not lif.v.requires_grad
    second = lif(x[4:])
    second.sum().backward()
    assert x.grad[:4].abs().sum() == 0 and x.grad[4:].abs().sum() > 0
    whole = LIF(tau=0.9, v_th=0.3)(x.detach())  # the values are those of one uninterrupted run
    assert torch.equal(torch.cat([first, second]).detach(), whole)


def test_output_integrator_readouts():
    x = torch.arange(12.0).reshape(3, 2, 2)  # [T=3, B=2, K=2]
    mean = OutputIntegrator("mean")
    torch.testing.assert_close(mean(x), x.sum(0) / 3)
    torch.testing.assert_close(mean.final_potential, x.sum(0))
    torch.testing.assert_close(OutputIntegrator("final")(x), x.sum(0))
    torch.testing.assert_close(OutputIntegrator("all")(x), x.cumsum(0))
    single = OutputIntegrator("mean", step_mode="single")
    for t in range(3):
        out = single(x[t])
    torch.testing.assert_close(out, x.sum(0) / 3)
    assert single.steps == 3
    with pytest.raises(ValueError, match="unknown readout"):
        OutputIntegrator("max")


def _net():
    return nn.Sequential(
        TimeFolded(nn.Linear(6, 8)),
        LIF(),
        TimeFolded(nn.Linear(8, 8)),
        LIF(),
        TimeFolded(nn.Linear(8, 3)),
        OutputIntegrator(),
    )


def test_membrane_recorder_records_with_gradient_only_inside_context():
    net = _net()
    x = torch.randn(4, 5, 6)
    with MembraneRecorder(net) as rec:
        out = net(x)
    assert [m.shape for m in rec.membranes] == [(4, 5, 8), (4, 5, 8)]
    assert rec.layer_names == ["1", "3"]
    assert all(m.requires_grad for m in rec.membranes)
    # the recorded u_pre is exactly what produced the spikes
    spikes = net[1](net[0](x))
    assert torch.equal((rec.by_layer["1"][0] >= 0.5).float(), spikes)
    (out.sum() + sum((m**2).mean() for m in rec.membranes)).backward()
    assert net[0][0].weight.grad is not None
    # nothing is attached or kept once the context is left
    assert all(not m._membrane_sinks for m in net.modules() if isinstance(m, LIF))
    n = len(rec.membranes)
    net(x)
    assert len(rec.membranes) == n


def test_membrane_recorder_options():
    net = _net()
    x = torch.randn(4, 5, 6)
    seen = []
    with MembraneRecorder(net, layers=["3"], on_record=lambda name, u: seen.append((name, u.shape))):
        net(x)
    assert seen == [("3", (4, 5, 8))]
    with MembraneRecorder(net, detach=True) as rec:
        net(x)
    assert not any(m.requires_grad for m in rec.membranes)
    rec.clear()
    assert rec.membranes == [] and rec.by_layer["1"] == []
    with pytest.raises(ValueError, match="no spiking layer named"):
        MembraneRecorder(net, layers=["9"])
    with pytest.raises(ValueError, match="no spiking neurons"):
        MembraneRecorder(nn.Linear(2, 2))


def test_threshold_buffer_moves_and_saves():
    n = IF(v_th=torch.tensor([0.5, 1.0]))
    assert "v_th" in n.state_dict()
    n.set_threshold(torch.tensor([0.2, 0.4]))
    m = IF(v_th=torch.tensor([1.0, 1.0]))
    m.load_state_dict(n.state_dict())
    torch.testing.assert_close(m.v_th, torch.tensor([0.2, 0.4]))
    assert "reset='soft'" in repr(n) and "tau" not in repr(n)


def test_step_mode_validation():
    with pytest.raises(ValueError, match="valid values: multi, single"):
        LIF(step_mode="multistep")


def test_one_parameter_set_for_functions_and_modules():
    from rmpsnn.functional import IF_PARAMS, LIF_PARAMS, NeuronParams, if_multistep, lif_multistep

    x = torch.randn(5, 3, 4) * 0.6 + 0.3
    p = NeuronParams(tau=0.5, v_th=torch.tensor([0.4, 0.5, 0.6, 0.7]), reset="soft", v_init="half")
    by_keywords = lif_multistep(x, tau=0.5, v_th=p.v_th, reset="soft", v_init="half")
    assert torch.equal(lif_multistep(x, p), by_keywords)
    assert torch.equal(
        lif_multistep(x, p, tau=0.25), lif_multistep(x, tau=0.25, v_th=p.v_th, reset="soft", v_init="half")
    )
    assert torch.equal(if_multistep(x), lif_multistep(x, IF_PARAMS))
    assert (LIF_PARAMS.tau, LIF_PARAMS.v_th, LIF_PARAMS.reset) == (0.25, 0.5, "hard")
    assert (IF_PARAMS.tau, IF_PARAMS.v_th, IF_PARAMS.reset) == (1.0, 1.0, "soft")
    # a module runs the same neuron: its params (with the current threshold) reproduce its output
    lif = LIF(tau=0.5, reset="soft", v_init="half")
    lif.set_threshold(p.v_th)
    assert torch.equal(lif(x), by_keywords) and torch.equal(lif.params.v_th, p.v_th)
    assert torch.equal(lif_multistep(x, lif.params), by_keywords)
    lif.detach_reset = True  # fields are attributes, validated when set
    assert lif.params.detach_reset and lif.detach_reset
    with pytest.raises(ValueError, match="unknown reset 'soft-ish'"):
        lif.reset = "soft-ish"
    with pytest.raises(ValueError, match=r"tau \(the leak factor\) must be in \[0, 1\]"):
        NeuronParams(tau=2.0)
    with pytest.raises(TypeError, match=r"unknown argument.*vth.*tau, v_th, reset"):
        lif_multistep(x, vth=0.5)
    with pytest.raises(ValueError, match="v_init must be"):
        lif_multistep(x, v_init="quarter")
