"""The spiking models behave as PyTorch modules should: deepcopy / AveragedModel after a training
forward, the meta device, torch.export of an inference model, torch.compile(fullgraph=True) for
training and inference on CPU -- each with the same numbers as eager."""

import copy

import pytest
import torch
import torch.nn.functional as F

from rmpsnn.models import create
from rmpsnn.neurons import LIF, OutputIntegrator


def small_net():
    torch.manual_seed(0)
    return create("cpu_net", width=[4, 8, 8], image_size=16, timesteps=2)


def test_deepcopy_and_averaged_model_after_a_training_forward():
    model = small_net()
    F.cross_entropy(model(torch.rand(3, 3, 16, 16)), torch.tensor([0, 1, 2])).backward()
    twin = copy.deepcopy(model)
    swa = torch.optim.swa_utils.AveragedModel(model)
    swa.update_parameters(model)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(twin(x), model(x)) and torch.equal(swa.module(x), model(x))
    # stateful single-step neurons carry a potential with a graph between calls
    lif, readout = LIF(step_mode="single"), OutputIntegrator(step_mode="single")
    w = torch.ones(3, requires_grad=True)
    readout(lif(torch.rand(2, 3) * w))
    assert lif.v.grad_fn is not None
    for m in (lif, readout):
        c = copy.deepcopy(m)
        assert c.v is not None and c.v.grad_fn is None and torch.equal(c.v, m.v.detach())


def test_meta_device_gives_shapes_without_data():
    out = small_net().to("meta")(torch.empty(5, 3, 16, 16, device="meta"))
    assert out.shape == (5, 10) and out.device.type == "meta"
    with torch.device("meta"):
        resnet = create("resnet19", timesteps=2)
    assert resnet(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_torch_export_of_an_inference_model():
    model = small_net().eval()
    x = torch.rand(4, 3, 16, 16)
    program = torch.export.export(model, (x,))
    assert torch.equal(program.module()(x), model(x))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_compile_fullgraph_matches_eager_and_keeps_the_fused_kernels(mode, monkeypatch):
    from rmpsnn.functional import fused as neuron  # the kernel glue the custom ops call

    model = small_net().train(mode == "train")
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    compiled = torch.compile(model, fullgraph=True)
    calls = []
    for name in ("_cpu_forward", "_cpu_backward"):  # the custom ops run these at call time
        fn = getattr(neuron, name)
        monkeypatch.setattr(neuron, name, lambda *a, _fn=fn, _n=name, **k: calls.append(_n) or _fn(*a, **k))
    n_lif = sum(isinstance(m, LIF) for m in model.modules())
    if mode == "eval":
        with torch.no_grad():
            ref = model(x)
            calls.clear()
            assert torch.allclose(compiled(x), ref, atol=1e-6)
        assert calls == ["_cpu_forward"] * n_lif
        return
    F.cross_entropy(model(x), y).backward()
    eager = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    calls.clear()
    F.cross_entropy(compiled(x), y).backward()
    assert sorted(calls) == ["_cpu_backward"] * n_lif + ["_cpu_forward"] * n_lif
    for g_eager, p in zip(eager, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g_eager, rtol=1e-4, atol=1e-5)


def test_the_kernel_ops_pass_opcheck_and_export_stays_portable():
    """The custom ops' schemas, fake (meta) implementations and dispatch are consistent
    (torch.library.opcheck); an exported graph holds aten ops only (no rmpsnn op to ship)."""
    from rmpsnn.functional import fused

    x2 = torch.randn(3, 40) * 0.7 + 0.3
    th = torch.tensor([0.5, 0.7])
    tau = torch.tensor([0.25])
    for need_upre, radius in ((True, 0.0), (False, 0.5), (False, 0.0)):
        args = (x2, th, 20, th * 0.5, 20, tau, 1, True, need_upre, radius, "cpu")
        torch.library.opcheck(fused.lif_forward_op, args)
    upre = fused.lif_forward_op(x2, th, 20, None, 1, tau, 1, False, True, 0.0, "cpu")[1]
    g = torch.randn(3, 40)
    taus = torch.tensor([0.3, 0.6])
    for gs, gu, gl in ((g, None, None), (g, g, g[0]), (None, g, None)):
        for tau_args, want_dtau in (((tau, 1), False), ((taus, 20), True)):
            args = (
                gs,
                gu,
                gl,
                upre,
                th,
                20,
                *tau_args,
                th * 0.5,
                20,
                False,
                True,
                want_dtau,
                0,
                3.0,
                1.0,
                0.0,
            )
            torch.library.opcheck(fused.lif_backward_op, (*args, torch.float32, "cpu"))
    program = torch.export.export(small_net().eval(), (torch.rand(2, 3, 16, 16),))
    assert "rmpsnn" not in program.graph_module.code


def test_models_take_the_neuron_and_reset_states_resets_everything():
    from rmpsnn.conversion import convert
    from rmpsnn.layers import PoissonEncoder
    from rmpsnn.neurons import IF, reset_states

    net = create("resnet19", neuron="if", reset="soft", v_th=1.0, timesteps=2)
    kinds = {type(m) for m in net.modules() if isinstance(m, (IF, LIF))}
    assert kinds == {IF} and all(m.reset == "soft" for m in net.modules() if isinstance(m, IF))
    custom = create("cpu_net", neuron=lambda **kw: LIF(**{**kw, "tau": 0.5}), width=[4, 8, 8])
    assert {m.tau for m in custom.modules() if isinstance(m, LIF)} == {0.5}
    with pytest.raises(ValueError, match="unknown neuron 'alif'"):
        create("cpu_net", neuron="alif")
    # one call resets neurons, converted IF layers and a seeded Poisson encoder alike
    torch.manual_seed(0)
    ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    snn = convert(ann, torch.rand(16, 4), calibrate="none", balance="act-max")
    enc = PoissonEncoder(3, seed=1)
    lif = LIF(step_mode="single")
    snn(torch.rand(2, 4), 3)
    x = torch.full((2, 4), 0.5)
    first = enc(x)
    lif(torch.rand(2, 4))
    model = torch.nn.ModuleList([snn, enc, lif])
    reset_states(model)
    assert lif.v is None and all(n.v is None for n in snn.if_nodes) and enc._gen is None
    assert torch.equal(enc(x), first)  # the encoder starts its seeded sequence again
