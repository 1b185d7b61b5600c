"""Backward passes against an unrolled autograd reference and the analytic surrogate derivatives."""

import pytest
import torch

from rmpsnn import surrogate as S
from rmpsnn.functional import lif_multistep, lif_multistep_state

from .conftest import BACKENDS, naive_lif


def _grads(fn, x, seed=1):
    xx = x.clone().requires_grad_()
    s, u = fn(xx)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(s.shape, generator=g)
    loss = (s * w).sum() + (0.1 * u * u).sum()  # gradients through spikes AND membranes
    loss.backward()
    return s.detach(), u.detach(), xx.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", S.available())
@pytest.mark.parametrize("detach_reset", [False, True])
def test_bptt_matches_unrolled_autograd(backend, reset, name, detach_reset):
    x = torch.randn(6, 3, 4, 5, 5) * 0.6 + 0.3
    th = torch.rand(4) + 0.3
    ref = _grads(
        lambda v: naive_lif(v, 0.25, th.reshape(1, 4, 1, 1), reset, name, detach_reset=detach_reset)[:2], x
    )
    got = _grads(
        lambda v: lif_multistep(
            v,
            tau=0.25,
            v_th=th,
            reset=reset,
            surrogate=name,
            return_membrane=True,
            detach_reset=detach_reset,
            backend=backend,
        ),
        x,
    )
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_without_recorded_membrane(backend):
    """The path that reuses the membrane buffer (float32 storage) gives the same gradient."""
    x = torch.randn(5, 4, 32) * 0.7 + 0.2
    xr = x.clone().requires_grad_()
    s_ref = naive_lif(xr, 0.25, 0.5, "hard", "inflor")[0]
    w = torch.randn_like(s_ref)
    (s_ref * w).sum().backward()
    xx = x.clone().requires_grad_()
    s = lif_multistep(xx, backend=backend, membrane_storage="float32" if backend == "cpu" else "auto")
    (s * w).sum().backward()
    torch.testing.assert_close(xx.grad, xr.grad, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["inflor", "rectangle", "triangle"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_compact_membrane_storage_close_to_float(name, reset):
    x = torch.randn(6, 8, 3, 7, 7) * 0.6 + 0.3
    grads = []
    for storage in ("float32", "compact"):
        xx = x.clone().requires_grad_()
        s = lif_multistep(xx, reset=reset, surrogate=name, membrane_storage=storage, backend="cpu")
        w = torch.randn(s.shape, generator=torch.Generator().manual_seed(3))
        (s * w).sum().backward()
        grads.append((s.detach(), xx.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    # 16-bit codes resolve z to h/32766: gradients agree to ~1e-5 relative
    scale = grads[0][1].abs().max()
    assert (grads[0][1] - grads[1][1]).abs().max() <= 1e-4 * scale


def test_v_init_receives_gradient():
    x = torch.randn(4, 3, 6)
    for backend in BACKENDS:
        v0 = (torch.rand(3, 6) * 0.4).requires_grad_()
        s, _, last = lif_multistep_state(x, v_init=v0, backend=backend)
        ((s * torch.arange(4.0).reshape(4, 1, 1)).sum() + last.sum()).backward()
        v0r = v0.detach().clone().requires_grad_()
        sr, _, lastr = naive_lif(x, 0.25, 0.5, "hard", "inflor", v0=v0r)
        ((sr * torch.arange(4.0).reshape(4, 1, 1)).sum() + lastr.sum()).backward()
        torch.testing.assert_close(v0.grad, v0r.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", S.available())
def test_kernel_surrogate_equals_analytic_derivative(name):
    """With T=1 and no later step, dL/dx = dL/ds * φ'(x - v_th): read φ' off the fused kernel."""
    sg = S.get(name)
    z = torch.linspace(-1.5, 1.5, 3000)  # avoids the window edges, where one-sided rules differ
    for backend in BACKENDS:
        x = (z + 0.5).reshape(1, -1).clone().requires_grad_()
        lif_multistep(
            x,
            v_th=0.5,
            surrogate=name,
            backend=backend,
            membrane_storage="float32" if backend == "cpu" else "auto",
        ).sum().backward()
        zz = z.clone().requires_grad_()
        sg.primitive(zz).sum().backward()  # autograd derivative of the primitive φ
        torch.testing.assert_close(x.grad.flatten(), zz.grad, atol=2e-6, rtol=1e-5)


def test_retain_graph_second_backward_is_refused_not_wrong():
    x = torch.randn(3, 2, 8, requires_grad=True)
    s = lif_multistep(x, membrane_storage="float32")
    s.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        s.sum().backward()


def test_custom_surrogate_runs_on_torch_path():
    class Box(S.Surrogate):
        name = "box"

        def grad(self, z):
            return (z.abs() < 0.25).to(z.dtype) * 2.0

        def primitive(self, z):
            return (2 * z + 0.5).clamp(0, 1)

    x = torch.randn(4, 3, 5, requires_grad=True)
    s = lif_multistep(x, surrogate=Box())
    s.sum().backward()
    xr = x.detach().clone().requires_grad_()
    naive_lif(xr, 0.25, 0.5, "hard", Box())[0].sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
