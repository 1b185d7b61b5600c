"""Bad input gets an error that says what was wrong and how to fix it."""

import pytest
import torch

from rmpsnn.functional import lif_multistep
from rmpsnn.neurons import IF, LIF


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"time-major tensor \[T, B, ...\].*unsqueeze"):
        lif_multistep(torch.randn(5))


def test_empty_time():
    with pytest.raises(ValueError, match="T = 0"):
        lif_multistep(torch.randn(0, 3, 4))


def test_integer_input():
    with pytest.raises(TypeError, match="floating-point"):
        lif_multistep(torch.ones(2, 3, dtype=torch.long))


def test_unknown_surrogate_lists_valid_names():
    names = "inflor, rectangle, sigmoid, atan, triangle, fast-sigmoid"
    with pytest.raises(ValueError, match=rf"unknown surrogate 'relu'.*{names}"):
        lif_multistep(torch.randn(2, 3), surrogate="relu")


def test_unknown_reset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown reset 'zero'; valid values: hard, soft"):
        lif_multistep(torch.randn(2, 3), reset="zero")
    with pytest.raises(ValueError, match="valid values: hard, soft"):
        IF(reset="subtract")


@pytest.mark.parametrize("bad", [0.0, -1.0, torch.tensor([0.5, 0.0, 1.0])])
def test_non_positive_threshold(bad):
    with pytest.raises(ValueError, match="v_th must be > 0"):
        lif_multistep(torch.randn(2, 4, 3), v_th=bad)
    with pytest.raises(ValueError, match="v_th must be > 0"):
        LIF(v_th=bad)


def test_mismatched_threshold_shape():
    with pytest.raises(
        ValueError, match=r"v_th of shape \(5,\) does not match.*per-channel vector of length 3"
    ):
        lif_multistep(torch.randn(2, 4, 3, 6, 6), v_th=torch.ones(5))
    with pytest.raises(ValueError, match="more dimensions"):
        lif_multistep(torch.randn(2, 4, 3), v_th=torch.ones(1, 1, 4, 3))


def test_other_parameters():
    with pytest.raises(ValueError, match=r"tau .* must be in \[0, 1\]"):
        lif_multistep(torch.randn(2, 3), tau=1.5)
    with pytest.raises(ValueError, match="unknown backend"):
        lif_multistep(torch.randn(2, 3), backend="cuda")
    with pytest.raises(ValueError, match=r"backend='cpu'.*float32 CPU"):
        lif_multistep(torch.randn(2, 3, dtype=torch.float64), backend="cpu")
    with pytest.raises(ValueError, match="v_init must be"):
        lif_multistep(torch.randn(2, 3), v_init="zero")
    with pytest.raises(ValueError, match=r"membrane_storage='compact' needs"):
        lif_multistep(torch.randn(2, 3), surrogate="sigmoid", membrane_storage="compact")
    with pytest.raises(ValueError, match="unknown membrane_storage"):
        lif_multistep(torch.randn(2, 3), membrane_storage="half")
