import math

import pytest
import torch

from rmpsnn import surrogate as S


@pytest.mark.parametrize("name", S.available())
def test_grad_is_derivative_of_primitive(name):
    sg = S.get(name)
    z = torch.linspace(-2, 2, 4000, dtype=torch.float64, requires_grad=True)
    sg.primitive(z).sum().backward()
    torch.testing.assert_close(sg.grad(z.detach()), z.grad, atol=1e-10, rtol=1e-8)


def test_inflor_is_eq5_at_threshold_half():
    """RMP-Loss eq. 5 written in u with v_th = 0.5."""
    sg = S.get("inflor")
    u = torch.linspace(-0.5, 1.5, 2001, dtype=torch.float64)
    phi = torch.where(
        u < 0, 0.0, torch.where(u > 1, 1.0, torch.tanh(3 * (u - 0.5)) / (2 * math.tanh(1.5)) + 0.5)
    )
    torch.testing.assert_close(sg.primitive(u - 0.5), phi)
    # derivative: 3 / (2 tanh(3/2)) * (1 - tanh^2(3(u - 1/2))) inside [0, 1], 0 outside
    dphi = torch.where(
        (u >= 0) & (u <= 1), 3 / (2 * math.tanh(1.5)) * (1 - torch.tanh(3 * (u - 0.5)) ** 2), 0.0
    )
    torch.testing.assert_close(sg.grad(u - 0.5), dphi)


@pytest.mark.parametrize("name", ["inflor", "rectangle", "sigmoid", "atan", "triangle"])
def test_unit_area(name):
    """All but fast-sigmoid integrate to 1 (a smoothed unit step)."""
    z = torch.linspace(-60, 60, 1_200_001, dtype=torch.float64)
    area = torch.trapezoid(S.get(name).grad(z), z)
    tail = 2 / (torch.pi**2 * 60) if name == "atan" else 0.0  # atan: heavy tails beyond +-60
    assert abs(area.item() - 1 + tail) < 5e-4


def test_sharpness_parameters():
    z = torch.tensor([0.0], dtype=torch.float64)
    assert S.get("sigmoid", alpha=8).grad(z).item() == pytest.approx(2.0)
    assert S.get("atan", alpha=4).grad(z).item() == pytest.approx(2.0)
    assert S.get("rectangle", width=0.5).grad(z).item() == pytest.approx(2.0)
    assert S.get("triangle", width=0.25).grad(z).item() == pytest.approx(4.0)
    assert S.get("fast-sigmoid", slope=5).grad(
        torch.tensor([0.2], dtype=torch.float64)
    ).item() == pytest.approx(0.25)
    assert S.get("inflor", k=3, width=2).support_radius == 1.0


def test_spike_function_forward_backward():
    sg = S.get("rectangle")
    z = torch.tensor([-0.6, -0.2, 0.0, 0.3], requires_grad=True)
    o = sg(z)
    assert o.tolist() == [0, 0, 1, 1]
    o.sum().backward()
    assert z.grad.tolist() == [0, 1, 1, 1]


def test_lookup_errors_and_aliases():
    with pytest.raises(ValueError, match="valid names: inflor, rectangle"):
        S.get("gaussian")
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        S.get("sigmoid", alpha=0)
    assert isinstance(S.get("superspike"), S.FastSigmoid)
    inst = S.ATan(alpha=3)
    assert S.get(inst) is inst
    with pytest.raises(TypeError):
        S.get(inst, alpha=2)
