"""RMP-Loss, its schedule and the quantisation error against values computed by hand."""

import pytest
import torch

from rmpsnn.losses import (
    QuantizationErrorMeter,
    quantization_distance,
    quantization_error,
    rmp_lambda,
    rmp_loss,
)
from rmpsnn.neurons import LIF, MembraneRecorder


def test_distance_eq8():
    u = torch.tensor([-0.2, 0.0, 0.3, 0.5, 0.9, 1.4])
    # below v_th: 0 - u;  at/above v_th (spike): 1 - u
    assert quantization_distance(u).tolist() == pytest.approx([0.2, 0.0, -0.3, 0.5, 0.1, -0.4])


def test_rmp_loss_by_hand():
    a = torch.tensor([[0.3, 0.9]])  # |Dis|: 0.3, 0.1  -> squares 0.09, 0.01
    b = torch.tensor([[1.4, -0.2, 0.5, 0.0]])  # |Dis|: 0.4, 0.2, 0.5, 0.0 -> 0.16, 0.04, 0.25, 0
    # per-element mean over all 6 elements vs mean of the per-layer means
    assert rmp_loss([a, b]).item() == pytest.approx((0.09 + 0.01 + 0.16 + 0.04 + 0.25) / 6)
    assert rmp_loss([a, b], reduction="layer").item() == pytest.approx(((0.10 / 2) + (0.45 / 4)) / 2)
    assert rmp_loss([a], p=1).item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="valid values: element, layer"):
        rmp_loss([a], reduction="sum")
    with pytest.raises(ValueError, match="MembraneRecorder"):
        rmp_loss([])


def test_rmp_loss_gradient_pulls_toward_the_spike():
    u = torch.tensor([0.3, 0.7], requires_grad=True)
    rmp_loss([u]).backward()
    # d/du of (-u)^2 / 2 = u at 0.3 (push down to 0); of (1 - u)^2 / 2 = -(1 - u) at 0.7 (push up to 1)
    assert u.grad.tolist() == pytest.approx([0.3, -0.3])


def test_rmp_lambda_eq12():
    assert rmp_lambda(0, 100) == 0.0
    assert rmp_lambda(25, 100) == pytest.approx(0.05)
    assert rmp_lambda(50, 100) == pytest.approx(0.1)
    assert rmp_lambda(75, 100) == pytest.approx(0.05)
    assert rmp_lambda(100, 100) == 0.0
    assert rmp_lambda(10, 40, k=0.2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_epochs"):
        rmp_lambda(1, 0)


def test_quantization_error_and_meter():
    a = torch.tensor([0.3, 0.9])
    b = torch.tensor([1.4, -0.2, 0.5, 0.0])
    q = quantization_error([a, b])
    assert q["mean_abs"] == pytest.approx((0.3 + 0.1 + 0.4 + 0.2 + 0.5) / 6)
    assert q["per_layer"]["0"]["mean_sq"] == pytest.approx(0.05)
    meter = QuantizationErrorMeter()
    meter.update({"l1": a})
    meter.update({"l1": b})
    assert meter.compute()["mean_abs"] == pytest.approx(1.5 / 6)


def test_with_recorded_membranes_of_a_model():
    net = torch.nn.Sequential(LIF(), LIF())
    x = torch.rand(4, 3, 8)
    with MembraneRecorder(net) as rec:
        net(x)
    loss = rmp_loss(rec.membranes)
    assert loss.item() == pytest.approx(
        torch.cat([quantization_distance(m).reshape(-1) ** 2 for m in rec.membranes]).mean().item()
    )


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("reduction", ["element", "layer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_rmp_loss_matches_the_plain_expression(p, reduction, dtype):
    """The fused loss (one pass each way, nothing kept) equals the autograd expression of eq. 8-10."""
    from rmpsnn.losses import quantization_distance

    g = torch.Generator().manual_seed(3)
    shapes = [(4, 3, 8, 5, 5), (4, 3, 70)]
    us = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]
    loss = rmp_loss(us, v_th=0.4, p=p, reduction=reduction)
    grads = torch.autograd.grad(loss, us)
    qs = [quantization_distance(u, 0.4).abs().pow(p) for u in us]
    if reduction == "layer":
        ref = torch.stack([q.mean() for q in qs]).mean()
    else:
        ref = sum(q.sum() for q in qs) / sum(q.numel() for q in qs)
    ref_grads = torch.autograd.grad(ref, us)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(loss, ref, rtol=tol, atol=tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="p > 0"):
        rmp_loss(us, p=0)


def test_per_membrane_thresholds_from_the_recorder():
    """Contract 1: a threshold per membrane (floats, 0-d or per-channel tensors) sets each layer's
    spike/no-spike split; the recorder hands over the neurons' own thresholds."""
    a = torch.tensor([[0.3, 0.9]])  # v_th 0.25: both fire -> |Dis| 0.7, 0.1
    b = torch.tensor([[[0.4], [0.4]]])  # per channel [0.5, 0.3]: no spike, spike -> 0.4, 0.6
    per_channel = torch.tensor([[0.5], [0.3]])
    want = (0.49 + 0.01 + 0.16 + 0.36) / 4
    assert rmp_loss([a, b], v_th=[0.25, per_channel]).item() == pytest.approx(want)
    assert rmp_loss([a, b], v_th=[torch.tensor(0.25), per_channel]).item() == pytest.approx(want)
    q = quantization_error([a, b], v_th=[0.25, per_channel])
    assert q["mean_abs"] == pytest.approx((0.7 + 0.1 + 0.4 + 0.6) / 4)
    meter = QuantizationErrorMeter()
    meter.update({"a": a, "b": b}, v_th=[0.25, per_channel])
    assert meter.compute()["mean_sq"] == pytest.approx(want)
    with pytest.raises(ValueError, match="2 membranes"):
        rmp_loss([a, b], v_th=[0.25])

    net = torch.nn.Sequential(LIF(v_th=0.3), LIF(v_th=0.7))
    with MembraneRecorder(net) as rec:
        net(torch.rand(4, 3, 8))
    assert [float(t) for t in rec.thresholds] == pytest.approx([0.3, 0.7])
    pairs = zip(rec.membranes, (0.3, 0.7), strict=True)
    by_hand = torch.cat([quantization_distance(u, th).reshape(-1) ** 2 for u, th in pairs]).mean()
    assert rmp_loss(rec.membranes, v_th=rec.thresholds).item() == pytest.approx(by_hand.item())
