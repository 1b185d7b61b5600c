"""The Triton kernels (the CUDA path) against the reference loop, run by Triton's interpreter on CPU
tensors (TRITON_INTERPRET=1): values and gradients for every option -- hard/soft reset,
detach_reset, scalar / per-channel / per-neuron thresholds, v_init, every built-in surrogate,
float32 / float16 / bfloat16, 16-bit membrane storage, the fused RMP-Loss -- and the errors.
Shapes are small: the interpreter runs each kernel program in numpy."""

import os
import types

import pytest
import torch

from rmpsnn import surrogate as S
from rmpsnn.errors import InputError
from rmpsnn.functional import kernels, lif_multistep, lif_multistep_state
from rmpsnn.functional.kernels import select_kernel
from rmpsnn.losses import rmp_loss
from rmpsnn.neurons import LIF

from .conftest import naive_lif

if kernels.importlib.util.find_spec("triton") is None:  # scripts/setup.sh --test installs it
    if os.environ.get("CI"):
        pytest.fail("triton is not installed: CI must run the Triton kernel tests", pytrace=False)
    pytest.skip("triton is not installed (scripts/setup.sh --test installs it)", allow_module_level=True)


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    # Triton fixes interpreted vs compiled kernels when they are first defined: always interpreted here
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _run(x, backend, *, v_init=None, grads=True, **kw):
    """Spikes, membranes, final potential and the gradients of x and v_init under a fixed loss that
    reaches every output (spikes, membranes and the final state)."""
    xx = x.clone().requires_grad_(grads)
    v0 = v_init.clone().requires_grad_(grads) if torch.is_tensor(v_init) else v_init
    s, u, last = lif_multistep_state(xx, v_init=v0, need_membrane=True, backend=backend, **kw)
    if not grads:
        return s, u, last
    g = torch.Generator().manual_seed(7)
    w_s, w_u = torch.randn(s.shape, generator=g), torch.randn(u.shape, generator=g)
    w_l = torch.randn(last.shape, generator=g)
    loss = (s.float() * w_s).sum() + (u.float() * w_u).sum() + (last.float() * w_l).sum()
    loss.backward()
    return s, u, last, xx.grad, (v0.grad if torch.is_tensor(v0) else None)


def _assert_all_close(got, ref, atol=2e-5, rtol=1e-4):
    for a, b in zip(got, ref, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", S.available())
@pytest.mark.parametrize("detach_reset", [False, True])
def test_values_and_gradients_match_the_reference_loop(reset, name, detach_reset):
    x = torch.randn(5, 3, 4, 6) * 0.6 + 0.3
    kw = dict(tau=0.5, v_th=torch.rand(4) + 0.3, reset=reset, surrogate=name, detach_reset=detach_reset)
    v0 = torch.rand(4, 1) * 0.3
    _assert_all_close(_run(x, "triton", v_init=v0, **kw), _run(x, "torch", v_init=v0, **kw))


def test_matches_unrolled_autograd():
    """Independent of the hand-written torch backward too: the plain-autograd unrolled neuron."""
    x = torch.randn(6, 3, 4, 5) * 0.6 + 0.3
    th = torch.rand(4) + 0.3
    xr = x.clone().requires_grad_()
    s_ref, u_ref, _ = naive_lif(xr, 0.25, th.reshape(4, 1), "hard", "inflor")
    w = torch.randn(s_ref.shape)
    ((s_ref * w).sum() + (0.1 * u_ref * u_ref).sum()).backward()
    xx = x.clone().requires_grad_()
    s, u = lif_multistep(xx, v_th=th, return_membrane=True, backend="triton")
    ((s * w).sum() + (0.1 * u * u).sum()).backward()
    _assert_all_close((s, u, xx.grad), (s_ref, u_ref, xr.grad))


@pytest.mark.parametrize(
    "v_th, v_init",
    [
        (0.5, None),  # scalar threshold, u[-1] = 0
        (torch.tensor(0.7), 0.2),  # 0-d tensor, a number
        (torch.rand(4) + 0.3, "half"),  # per channel, v_th / 2 (QCFS-style)
        (torch.rand(3, 4, 6) + 0.3, torch.rand(3, 4, 6) * 0.4),  # per neuron, per-neuron v_init
        (torch.rand(4, 1) + 0.3, torch.rand(1, 6) * 0.4),  # varies over channels / width only
        (torch.rand(3, 1, 6) + 0.3, None),  # non-adjacent dimensions: one value per neuron
    ],
)
def test_threshold_and_initial_potential_layouts(v_th, v_init):
    x = torch.randn(4, 3, 4, 6) * 0.6 + 0.3
    for reset in ("hard", "soft"):
        kw = dict(v_th=v_th, reset=reset, tau=0.25)
        _assert_all_close(_run(x, "triton", v_init=v_init, **kw), _run(x, "torch", v_init=v_init, **kw))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_half_precision_inputs_compute_in_float32(dtype, reset):
    """AMP inputs: outputs in the input dtype, the recurrence in float32 -- so the spikes equal those
    of the float32 reference on the same (rounded) inputs, and gradients agree to 16-bit rounding."""
    x = (torch.randn(5, 4, 3, 8) * 0.6 + 0.3).to(dtype)
    kw = dict(v_th=torch.tensor([0.5, 0.75, 1.0]), reset=reset, surrogate="sigmoid")
    got = _run(x, "triton", **kw)
    ref = _run(x.float(), "torch", **kw)
    assert all(t.dtype == dtype for t in got[:4])
    assert torch.equal(got[0].float(), ref[0])
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    _assert_all_close(got[1:4], ref[1:4], atol=tol, rtol=tol)


@pytest.mark.parametrize("name", ["inflor", "rectangle", "triangle"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_compact_membrane_storage_is_16_bit_and_close_to_float(name, reset):
    x = torch.randn(6, 4, 3, 5) * 0.6 + 0.3
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    results = {}
    for storage in ("float32", "compact"):
        saved = []

        def pack(t, saved=saved):
            saved.append(t)
            return t

        xx = x.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            s = lif_multistep(xx, reset=reset, surrogate=name, membrane_storage=storage, backend="triton")
        (s * w).sum().backward()
        results[storage] = (s.detach(), xx.grad, saved)
    assert [t.dtype for t in results["compact"][2]] == [torch.uint16]
    assert [t.dtype for t in results["float32"][2]] == [torch.float32]
    assert torch.equal(results["float32"][0], results["compact"][0])
    g32, g16 = results["float32"][1], results["compact"][1]
    assert (g32 - g16).abs().max() <= 1e-4 * g32.abs().max()
    # and the compact CPU kernel stores the very same codes: same gradients as the fused CPU path
    xx = x.clone().requires_grad_()
    (
        lif_multistep(xx, reset=reset, surrogate=name, membrane_storage="compact", backend="cpu") * w
    ).sum().backward()
    torch.testing.assert_close(g16, xx.grad, atol=1e-6, rtol=1e-5)


def test_inference_without_gradients_and_the_module_shell():
    x = torch.randn(4, 2, 3, 5) * 0.6 + 0.3
    with torch.no_grad():
        _assert_all_close(_run(x, "triton", grads=False), _run(x, "torch", grads=False))
        assert torch.equal(lif_multistep(x, backend="triton"), lif_multistep(x, backend="torch"))
    # a training step of a small layer stack through the module shell
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 6)
    grads = {}
    for backend in ("triton", "torch"):
        lin.zero_grad()
        out = LIF(backend=backend, reset="soft")(lin(x)).mean(0)
        out.sum().backward()
        grads[backend] = (out.detach(), lin.weight.grad.clone())
    _assert_all_close(grads["triton"], grads["torch"])


@pytest.mark.parametrize("p", [2, 1, 1.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rmp_loss(p, dtype):
    us = [(torch.randn(4, 3, 5, 7) * 0.6 + 0.3).to(dtype), torch.randn(3, 2, 700).to(dtype)]
    res = {}
    for backend in ("triton", "torch"):
        uu = [u.clone().requires_grad_() for u in us]
        loss = rmp_loss(uu, p=p, backend=backend)
        (3 * loss).backward()
        res[backend] = (loss.detach(), *[u.grad for u in uu])
    assert res["triton"][0].dtype == torch.float32  # a 16-bit sum over a layer would overflow
    assert all(g.dtype == dtype for g in res["triton"][1:])
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    _assert_all_close(res["triton"], res["torch"], atol=tol, rtol=tol)


def test_clear_errors(monkeypatch):
    x = torch.randn(3, 2, 4)
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(InputError, match=r"CUDA tensors.*TRITON_INTERPRET=1"):
        lif_multistep(x, backend="triton")
    with pytest.raises(InputError, match="TRITON_INTERPRET=1"):
        rmp_loss(x, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    class Custom(S.Surrogate):
        name = "custom"

        def grad(self, z):
            return torch.ones_like(z)

    with pytest.raises(InputError, match="no kernel"):
        lif_multistep(x, surrogate=Custom(), backend="triton")
    with pytest.raises(InputError, match="float32, float16 or bfloat16"):
        lif_multistep(x.double(), backend="triton")
    with pytest.raises(InputError, match="unknown backend"):
        lif_multistep(x, backend="cuda")


def test_auto_picks_the_device_kernel():
    """``auto``: Triton for CUDA tensors (when triton is installed), numba on CPU, the loop for
    what no kernel covers -- decided from device, dtype and surrogate alone."""

    def fake(device, dtype):
        return types.SimpleNamespace(device=torch.device(device), dtype=dtype)

    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert select_kernel("lif", fake("cuda", dtype)) == "triton"
        assert select_kernel("rmp", fake("cuda", dtype)) == "triton"  # one choice for neurons and RMP-Loss
    assert select_kernel("lif", fake("cuda", torch.float64)) == "torch"
    assert select_kernel("lif", fake("cpu", torch.float32)) == "cpu"
    assert select_kernel("lif", fake("cpu", torch.float32), kernel_surrogate=False) == "torch"
    assert select_kernel("lif", fake("cpu", torch.float32), features={"v_th_grad"}) == "torch"
    assert select_kernel("lif", fake("cpu", torch.float32), features={"tau_grad"}) == "cpu"
    assert select_kernel("lif", fake("cpu", torch.float16)) == "torch"  # not under interpret


def test_compiled_graphs_keep_the_triton_kernels():
    """Under torch.compile the Triton kernels run as custom ops (opaque to dynamo)."""
    lin = torch.nn.Linear(5, 6)
    layer = LIF(backend="triton")

    def step(x):
        return layer(lin(x)).sum(0)

    x = torch.randn(4, 2, 5)
    ref = step(x)
    ref.sum().backward()
    eager = lin.weight.grad.clone()
    lin.zero_grad()
    got = torch.compile(step, fullgraph=True)(x)
    got.sum().backward()
    assert torch.equal(got, ref)
    torch.testing.assert_close(lin.weight.grad, eager, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 3])
def test_several_programs_and_a_single_step(T):
    """N larger than one program's block (masked tail) and T = 1 (the backward's start offset 0)."""
    x = torch.randn(T, 2, 3, 401) * 0.6 + 0.3  # N = 2406: 5 programs of 512, the last one partial
    kw = dict(v_th=torch.rand(3) + 0.3, reset="soft", tau=0.5)
    v0 = torch.rand(3, 1) * 0.3
    _assert_all_close(_run(x, "triton", v_init=v0, **kw), _run(x, "torch", v_init=v0, **kw))


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("tau_shape", ["scalar", "channel"])
def test_triton_learnable_tau_matches_the_reference_autograd(reset, tau_shape):
    """PLIF's leak gradient (a reduction over time in the backward) under the interpreter equals
    autograd through the reference step, as do the values and the input and v_init gradients."""
    from rmpsnn.functional.params import as_param
    from rmpsnn.functional.reference import LIF_SPEC, Firing, run_reference

    torch.manual_seed(3)
    x0 = torch.randn(4, 2, 3, 5) * 0.6 + 0.3
    tau0 = torch.tensor(0.4) if tau_shape == "scalar" else torch.tensor([0.2, 0.6, 0.95])
    v00 = torch.rand(3, 5) * 0.3
    out = {}
    for name in ("ref", "triton"):
        x, tau, v0 = (t.clone().requires_grad_(True) for t in (x0, tau0, v00))
        if name == "ref":
            p = {
                "tau": as_param(tau, x.shape[1:], "tau", x).bcast,
                "v_th": torch.tensor(0.5),
                "reset": reset,
            }
            s, u, (last,) = run_reference(LIF_SPEC, x, p, (v0,), Firing(S.get("inflor")))
        else:
            s, u, last = lif_multistep_state(
                x, tau=tau, v_init=v0, reset=reset, backend="triton", need_membrane=True
            )
        w = torch.randn(s.shape, generator=torch.Generator().manual_seed(1))
        ((s * w).sum() + (u * 0.3).sum() + last.sum() * 0.2).backward()
        out[name] = (s.detach(), u.detach(), x.grad, tau.grad, v0.grad)
    _assert_all_close(out["triton"], out["ref"])


def test_triton_rmp_loss_reads_a_threshold_tensor():
    from rmpsnn.losses import rmp_loss

    u = torch.randn(3, 2, 8)
    th = torch.tensor(0.7)
    ref = rmp_loss([u], [th], backend="torch")
    torch.testing.assert_close(rmp_loss([u], [th], backend="triton"), ref)
