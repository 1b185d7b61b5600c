"""Every registered spiking model runs forward and backward at a tiny size."""

import pytest
import torch

from rmpsnn.models import create, list_models
from rmpsnn.neurons import LIF, MembraneRecorder

SIZES = {"vgg16": 32, "resnet18": 32, "resnet34": 32}


@pytest.mark.parametrize("name", list_models("snn"))
def test_forward_backward_shapes(name):
    model = create(name, num_classes=7, timesteps=2)
    s = SIZES.get(name, 16)
    if name == "cpu_net":
        model = create(name, num_classes=7, timesteps=2, width=(4, 8, 8), image_size=s)
    x = torch.randn(2, 3, s, s)
    with MembraneRecorder(model) as rec:
        out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    n_lif = sum(isinstance(m, LIF) for m in model.modules())
    assert len(rec.membranes) == n_lif and all(m.shape[0] == 2 for m in rec.membranes)


def test_event_input_and_neuron_options():
    model = create(
        "resnet19", num_classes=10, timesteps=3, in_channels=2, tau=0.5, v_th=1.0, surrogate="atan"
    )
    frames = torch.rand(3, 2, 2, 16, 16)  # [T, B, 2, H, W]
    assert model(frames).shape == (2, 10)
    lif = next(m for m in model.modules() if isinstance(m, LIF))
    assert lif.tau == 0.5 and float(lif.v_th) == 1.0 and lif.surrogate.name == "atan"
    with pytest.raises(ValueError, match=r"expected a static batch \[B, C, H, W\] or event frames"):
        model(torch.rand(2, 16, 16))


def test_residual_bns_use_alpha_one_over_sqrt2():
    from rmpsnn.models.spiking import SpikingBasicBlock

    block = next(m for m in create("resnet19", timesteps=1).modules() if isinstance(m, SpikingBasicBlock))
    assert block.bn1.alpha == 1.0 and block.bn2.alpha == pytest.approx(2**-0.5)
