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


def test_one_time_convention_model_owns_T_a_call_may_override_it():
    """docs/neurons.md, "Time": a static batch runs the model's own T unless the call gives one;
    time-major input brings its T, and a disagreeing timesteps is refused; nothing is mutated."""
    model = create("cpu_net", num_classes=5, timesteps=3, width=(4, 8, 8), image_size=16, readout="all")
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (3, 2, 5)
    assert model(x, timesteps=6).shape == (6, 2, 5) and model.timesteps == 3
    frames = torch.randn(4, 2, 3, 16, 16)
    assert model(frames).shape == (4, 2, 5) and model(frames, timesteps=4).shape == (4, 2, 5)
    with pytest.raises(ValueError, match=r"time-major with T = 4, but timesteps=2"):
        model(frames, timesteps=2)
    for bad in (0, 2.5, "abc", True):
        with pytest.raises(ValueError, match=r"the number of time steps must be a whole number >= 1, got"):
            model(x, timesteps=bad)


def test_probe_runs_one_step_without_touching_the_model():
    from rmpsnn.limits import probe_model

    long = create("cpu_net", num_classes=5, timesteps=50, width=(4, 8, 8), image_size=16)
    one = create("cpu_net", num_classes=5, timesteps=1, width=(4, 8, 8), image_size=16)
    seen = []
    long.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs), with_kwargs=True)
    assert probe_model(long, (3, 16, 16)) == probe_model(one, (3, 16, 16))
    assert long.timesteps == 50 and seen == [{"timesteps": 1}]

    class OwnT(torch.nn.Module):  # a user network with its own T that does not take timesteps
        def __init__(self):
            super().__init__()
            self.timesteps, self.act = 5, torch.nn.ReLU()

        def forward(self, x):  # [T, B, ...] activations, then the mean over T
            return self.act(x.unsqueeze(0).expand(self.timesteps, *x.shape)).mean(0)

    probe = probe_model(OwnT(), (3, 4, 4))
    assert probe.total == probe.largest == 3 * 4 * 4  # per step
