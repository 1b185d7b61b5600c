"""Networks users bring that the converter met badly (an outside audit): outputs that are not one
tensor, BN without running statistics, a second input, calibration data of the wrong size, dtype
changes after conversion, and linear operations refused as "not linear"."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmpsnn.conversion import convert
from rmpsnn.errors import ConversionError, InputError


def _mlp_body():
    torch.manual_seed(0)
    return nn.Linear(8, 16), nn.Linear(16, 4)


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = _mlp_body()

    def forward(self, x):
        h = F.relu(self.a(x))
        return self.b(h), h


class DictOut(TupleOut):
    def forward(self, x):
        return {"logits": self.b(F.relu(self.a(x)))}


@pytest.mark.parametrize("net", [TupleOut, DictOut])
def test_a_network_that_returns_more_than_one_tensor_is_refused_in_one_line(net):
    with pytest.raises(ConversionError, match="one tensor") as e:
        convert(net(), torch.randn(16, 8))
    assert "\n" not in str(e.value)


def test_batchnorm_without_running_statistics_is_refused_by_name():
    a, b = _mlp_body()
    ann = nn.Sequential(a, nn.BatchNorm1d(16, track_running_stats=False), nn.ReLU(), b).eval()
    with pytest.raises(ConversionError, match="running statistics"):
        convert(ann, torch.randn(16, 8))


class TwoInputs(TupleOut):
    def forward(self, x, y):
        return self.b(F.relu(self.a(x + y)))


def test_a_second_input_is_named_and_no_traceback_is_printed(capsys):
    with pytest.raises(ConversionError, match="2 inputs") as e:
        convert(TwoInputs(), torch.randn(16, 8))
    assert "'x', 'y'" in str(e.value)
    assert capsys.readouterr().err == ""


class ScaledInput(TupleOut):
    def forward(self, x, scale: float = 1.0):
        return self.b(F.relu(self.a(x * scale)))


def test_an_input_with_a_default_is_traced_at_its_default():
    ann = ScaledInput().eval()
    x = torch.randn(64, 8)
    snn = convert(ann, x)
    assert torch.allclose(snn.outputs(x, 256)[-1], ann(x), atol=0.1)


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3 * 8 * 8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_calibration_data_of_the_wrong_size_names_the_cause_without_a_traceback(capsys):
    with pytest.raises(InputError, match="mat1 and mat2") as e:
        convert(Flat(), torch.randn(4, 3, 16, 16))
    assert "ShapeProp" not in str(e.value) and "\n" not in str(e.value)
    assert capsys.readouterr().err == ""


def test_a_converted_snn_follows_a_change_of_dtype():
    ann = Flat().eval()
    x = torch.rand(8, 3, 8, 8)
    snn = copy.deepcopy(convert(ann, x)).double()
    out = snn.outputs(x.double(), 64)
    assert out.dtype == torch.float64
    with pytest.raises(InputError, match="float64"):
        snn(x, 4)


class LinearOps(nn.Module):
    """Operations that are linear in their input, each refused before as 'not linear'."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv3d(2, 4, 3, padding=1), nn.Conv3d(2, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 4, 1, 1, 1) + 0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        a, b = F.relu(self.c1(x)), F.relu(self.c2(x))
        h = F.avg_pool3d(a - b, 2) + F.adaptive_avg_pool3d(-b, 2) * 0.5
        h = F.relu(h * self.scale)
        return self.fc(torch.cat([torch.mean(h, (2, 3, 4)), h.sum((2, 3, 4)) / 8], 1))


def test_linear_operations_are_converted_and_approach_the_ann():
    ann = LinearOps().eval()
    x = torch.rand(32, 2, 4, 4, 4)
    snn = convert(ann, x, calibrate="none", balance="percentile", percentile=100.0)
    y, out = ann(x), snn.outputs(x, 512)[-1]
    assert ((out - y).norm() / y.norm()).item() < 0.05


@pytest.mark.parametrize("op", [lambda h: torch.mean(h, 0), lambda h: torch.sum(h, (0, 1))])
def test_a_reduction_over_the_batch_is_still_refused(op):
    class Net(TupleOut):
        def forward(self, x):
            return self.b(op(F.relu(self.a(x))).expand(x.shape[0], 16))

    with pytest.raises(ConversionError, match="dim 0"):
        convert(Net(), torch.randn(16, 8))


def test_a_percentile_given_as_a_fraction_is_refused():
    a, b = _mlp_body()
    with pytest.raises(InputError, match=r"99\.9"):
        convert(nn.Sequential(a, nn.ReLU(), b), torch.randn(16, 8), balance="percentile", percentile=0.999)
