"""Forward dynamics against sequences computed by hand."""

import pytest
import torch

from rmpsnn.functional import if_multistep, lif_multistep, lif_multistep_state

from .conftest import BACKENDS


def col(values):
    """[T] list -> [T, 1] tensor (one neuron, batch 1)."""
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_hard_reset_by_hand(backend):
    # tau=0.25, v_th=0.5: u_pre = 0.25 u + x
    x = col([0.3, 0.4, 0.2, 0.6, 0.1])
    # t0: 0.3 -> no spike, u=0.3;   t1: 0.075+0.4=0.475 -> no, u=0.475
    # t2: 0.11875+0.2=0.31875 -> no; t3: 0.0796875+0.6=0.6796875 -> spike, u=0
    # t4: 0+0.1=0.1 -> no
    s, u = lif_multistep(x, tau=0.25, v_th=0.5, reset="hard", return_membrane=True, backend=backend)
    assert s.flatten().tolist() == [0, 0, 0, 1, 0]
    torch.testing.assert_close(u.flatten(), torch.tensor([0.3, 0.475, 0.31875, 0.6796875, 0.1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_soft_reset_by_hand(backend):
    x = col([0.9, 0.0, 0.3, 0.0])
    # t0: 0.9 -> spike, u = 0.4;  t1: 0.1 -> no, u=0.1;  t2: 0.025+0.3=0.325 no;  t3: 0.08125 no
    s, u = lif_multistep(x, tau=0.25, v_th=0.5, reset="soft", return_membrane=True, backend=backend)
    assert s.flatten().tolist() == [1, 0, 0, 0]
    torch.testing.assert_close(u.flatten(), torch.tensor([0.9, 0.1, 0.325, 0.08125]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_if_soft_reset_keeps_residual(backend):
    # IF (tau=1), v_th=1, constant 0.4: potentials 0.4 0.8 1.2(s)->0.2 0.6 1.0(s)->0 0.4
    x = col([0.4] * 6)
    s, u = if_multistep(x, v_th=1.0, return_membrane=True, backend=backend)
    assert s.flatten().tolist() == [0, 0, 1, 0, 1, 0]
    torch.testing.assert_close(u.flatten(), torch.tensor([0.4, 0.8, 1.2, 0.6, 1.0, 0.4]))
    # hard reset loses the residual 0.2: 0.4 0.8 1.2(s)->0 0.4 0.8 1.2(s)
    s, u = if_multistep(x, v_th=1.0, reset="hard", return_membrane=True, backend=backend)
    assert s.flatten().tolist() == [0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_if_soft_rate_converges_to_relu(backend):
    """Rate x threshold of a soft-reset IF neuron -> clip(x, 0, v_th) with error <= v_th / T."""
    x = torch.linspace(-1, 2, 301)
    for T in (16, 256):
        rate = if_multistep(x.expand(T, -1).contiguous(), v_th=1.0, backend=backend).mean(0)
        assert (rate - x.clamp(0, 1)).abs().max() <= 1.0 / T + 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_channel_threshold(backend):
    # [T=3, B=1, C=2, L=1]; channel 0 threshold 0.5, channel 1 threshold 2.0, IF soft
    x = torch.tensor([[1.0, 1.0]] * 3).reshape(3, 1, 2, 1)
    th = torch.tensor([0.5, 2.0])
    s, u = if_multistep(x, v_th=th, return_membrane=True, backend=backend)
    # ch0: 1.0(s)->0.5, 1.5(s)->1.0, 2.0(s)     ch1: 1.0, 2.0(s)->0, 1.0
    assert s[:, 0, 0, 0].tolist() == [1, 1, 1]
    assert s[:, 0, 1, 0].tolist() == [0, 1, 0]
    torch.testing.assert_close(u[:, 0, 1, 0], torch.tensor([1.0, 2.0, 1.0]))
    torch.testing.assert_close(u[:, 0, 0, 0], torch.tensor([1.0, 1.5, 2.0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("th_shape", [(), (4,), (1, 4, 1, 1), (4, 5, 5), (2, 4, 5, 5), (1, 4, 1, 5), (5,)])
def test_threshold_shapes_match_broadcast_reference(backend, th_shape):
    """Any accepted threshold layout gives what explicit broadcasting gives."""
    x = torch.randn(5, 2, 4, 5, 5)
    th = torch.rand(th_shape) + 0.2
    s = lif_multistep(x, v_th=th, backend=backend)
    if th.ndim == 1 and th.shape[0] == 4:
        full = th.reshape(1, 4, 1, 1).expand(2, 4, 5, 5)
    else:
        full = th.expand(2, 4, 5, 5)
    ref = lif_multistep(x, v_th=full.contiguous(), backend="torch")
    assert torch.equal(s, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_v_init_and_final_state(backend):
    x = col([0.2, 0.2])
    s, u, last = lif_multistep_state(
        x, tau=1.0, v_th=1.0, reset="soft", v_init=0.7, need_membrane=True, backend=backend
    )
    torch.testing.assert_close(u.flatten(), torch.tensor([0.9, 1.1]))
    assert s.flatten().tolist() == [0, 1]
    torch.testing.assert_close(last, torch.tensor([0.1]), atol=1e-6, rtol=0)
    _, u2 = if_multistep(col([0.0]), v_th=0.8, v_init="half", return_membrane=True, backend=backend)
    torch.testing.assert_close(u2.flatten(), torch.tensor([0.4]))


def test_backends_agree_on_random_input():
    x = torch.randn(8, 4, 3, 6, 6)
    th = torch.rand(3) + 0.1
    for reset in ("hard", "soft"):
        for tau in (0.0, 0.25, 1.0):
            a, ua = lif_multistep(x, tau=tau, v_th=th, reset=reset, return_membrane=True, backend="cpu")
            b, ub = lif_multistep(x, tau=tau, v_th=th, reset=reset, return_membrane=True, backend="torch")
            assert torch.equal(a, b)
            torch.testing.assert_close(ua, ub)


def test_float64_and_non_contiguous_input_use_torch_path():
    x = torch.randn(4, 3, 8, dtype=torch.float64)
    s = lif_multistep(x)
    assert s.dtype == torch.float64
    xt = torch.randn(3, 4, 8).transpose(0, 1)  # non-contiguous [T, B, ...]
    assert torch.equal(lif_multistep(xt), lif_multistep(xt.contiguous(), backend="torch"))


def test_output_is_binary_and_same_dtype():
    x = torch.randn(4, 2, 10)
    s = lif_multistep(x)
    assert s.dtype == x.dtype and set(s.unique().tolist()) <= {0.0, 1.0}
