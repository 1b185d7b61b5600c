import math

import pytest
import torch
from torch import nn

from rmpsnn.layers import (
    DirectEncoder,
    PoissonEncoder,
    TdBatchNorm1d,
    TdBatchNorm2d,
    TimeFolded,
    fold_time,
    repeat_time,
    residual_alpha,
    unfold_time,
)


@pytest.mark.parametrize("alpha", [1.0, 1 / math.sqrt(2)])
def test_tdbn_normalises_over_time_and_batch_to_alpha_vth(alpha):
    bn = TdBatchNorm2d(3, alpha=alpha, v_th=0.5)
    x = torch.randn(4, 8, 3, 5, 5) * torch.tensor([1.0, 3.0, 0.2]).reshape(1, 1, 3, 1, 1) + 2.0
    y = bn(x)
    assert y.shape == x.shape
    per_channel = y.transpose(0, 2).reshape(3, -1)  # statistics over T, B, H, W jointly
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        per_channel.var(1, unbiased=False), torch.full((3,), (alpha * 0.5) ** 2), atol=1e-4, rtol=1e-3
    )
    # running statistics updated from the joint T*B statistics
    mu = x.transpose(0, 2).reshape(3, -1).mean(1)
    torch.testing.assert_close(bn.running_mean, 0.1 * mu, atol=1e-5, rtol=1e-5)


def test_tdbn_affine_eval_and_folded_input():
    bn = TdBatchNorm2d(2, v_th=1.0)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    x = torch.randn(3, 4, 2, 4, 4)
    y = bn(x)
    yf = bn(x.flatten(0, 1))  # folded input gives the same statistics
    torch.testing.assert_close(y.flatten(0, 1), yf)
    torch.testing.assert_close(y.mean(), torch.tensor(0.5), atol=1e-5, rtol=0)
    bn.eval()
    ye = bn(x)
    ref = (x - bn.running_mean.reshape(1, 1, 2, 1, 1)) / torch.sqrt(
        bn.running_var.reshape(1, 1, 2, 1, 1) + bn.eps
    )
    torch.testing.assert_close(ye, 2.0 * 1.0 * ref + 0.5)


def test_tdbn1d_shapes_and_errors():
    bn = TdBatchNorm1d(6)
    assert bn(torch.randn(4, 3, 6)).shape == (4, 3, 6)
    assert bn(torch.randn(4, 3, 6, 7)).shape == (4, 3, 6, 7)
    assert bn(torch.randn(12, 6)).shape == (12, 6)
    with pytest.raises(ValueError, match=r"expected \[T, B, C\]"):
        bn(torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        TdBatchNorm2d(3)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="alpha > 0"):
        TdBatchNorm2d(3, alpha=0)
    assert residual_alpha() == pytest.approx(2**-0.5)


def test_time_folded_runs_per_sample_layers_over_time():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    tf = TimeFolded(conv, nn.BatchNorm2d(4), nn.AvgPool2d(2))
    x = torch.randn(5, 2, 3, 8, 8)
    y = tf(x)
    assert y.shape == (5, 2, 4, 4, 4)
    tf.eval()
    y = tf(x)
    for t in range(5):
        torch.testing.assert_close(y[t], tf[2](tf[1](conv(x[t]))))
    with pytest.raises(ValueError, match=r"\[T, B, ...\]"):
        tf(torch.randn(2, 3))


def test_fold_unfold_repeat():
    x = torch.randn(3, 4, 5)
    assert torch.equal(unfold_time(fold_time(x), 3), x)
    r = repeat_time(torch.randn(4, 5), 6)
    assert r.shape == (6, 4, 5) and torch.equal(r[0], r[5])
    with pytest.raises(ValueError, match="multiple of timesteps"):
        unfold_time(torch.randn(7, 2), 3)


def test_encoders():
    img = torch.rand(2, 3, 4, 4)
    assert torch.equal(DirectEncoder(5)(img)[3], img)
    enc = PoissonEncoder(200, seed=7)
    a = enc(img)
    enc.reset()
    b = enc(img)
    assert torch.equal(a, b)  # reproducible under a seed
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(a.mean(0), img, atol=0.15, rtol=0)  # rate ~ intensity
    assert PoissonEncoder(3)(img).shape == (3, 2, 3, 4, 4)
