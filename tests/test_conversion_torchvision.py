"""Converting networks of torchvision's shapes (replicas written here with torchvision's module structure
and attribute names, small widths, random weights with BN statistics from a few batches): spiking
max pooling, shared in-place ReLUs, ReLU6/depthwise inverted residuals, channel concatenation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmpsnn.conversion import SpikingMaxPool, convert, simulate, simulate_layer
from rmpsnn.errors import ConversionError


def conv3x3(i, o, stride=1, groups=1):
    return nn.Conv2d(i, o, 3, stride, 1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), width=8, num_classes=10, max_pool=True):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if max_pool else nn.AvgPool2d(3, 2, 1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


class SmallResNet(nn.Module):
    """The issue's net: stem, MaxPool2d(3,2,1), two BasicBlocks sharing one ReLU each."""

    def __init__(self, width=16, max_pool=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if max_pool else nn.AvgPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg="A", div=8, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in CFGS[cfg]:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                v //= div
                layers += [
                    nn.Conv2d(c, v, kernel_size=3, padding=1),
                    nn.BatchNorm2d(v),
                    nn.ReLU(inplace=True),
                ]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        h = 512 // div
        self.classifier = nn.Sequential(
            nn.Linear(c * 49, h),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(h, h),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(h, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, i, o, k=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, k=1))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        setting = [[1, 8, 1, 1], [4, 8, 2, 2], [4, 12, 2, 2], [4, 16, 1, 1]]  # torchvision's, narrower
        features = [Conv2dNormActivation(3, width, stride=2)]
        c = width
        for t, o, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(c, o, s if i == 0 else 1, t))
                c = o
        features.append(Conv2dNormActivation(c, 32, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class _DenseLayer(nn.Module):
    def __init__(self, c, growth, bn_size=2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(
            c
        )  # pre-activation BN: folded only after a conv, so use post-act form below
        self.conv1 = nn.Conv2d(c, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)
        self.norm3 = nn.BatchNorm2d(growth)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, inputs):
        out = self.relu2(self.norm2(self.conv1(inputs)))
        return self.relu3(self.norm3(self.conv2(out)))


class DenseInception(nn.Module):
    """DenseNet-style concatenation plus an Inception block with a max-pool branch."""

    def __init__(self, growth=8, num_classes=10):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.norm0 = nn.BatchNorm2d(16)
        self.relu0 = nn.ReLU(inplace=True)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        c = 16
        self.denselayer1 = _DenseLayer(c, growth)
        self.denselayer2 = _DenseLayer(c + growth, growth)
        c += 2 * growth
        self.transition = nn.Sequential(
            nn.Conv2d(c, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)
        )
        self.branch1x1 = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU())
        self.branch3x3 = nn.Sequential(
            nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(16, 8, 1), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.pool0(self.relu0(self.norm0(self.conv0(x))))
        features = [x]
        for layer in (self.denselayer1, self.denselayer2):
            features.append(layer(torch.cat(features, 1)))
        x = self.transition(torch.cat(features, 1))
        x = torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch_pool(x)], 1)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def with_bn_stats(net, shape=(3, 32, 32), batches=3, seed=0):
    """Random weights, BN running statistics from a few random batches, eval mode."""
    torch.manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(32, *shape))
    return net.eval()


def agreement(net, timesteps=(16, 64), n=100, seed=1):
    """Fraction of ``n`` inputs on which the default conversion's SNN and its ANN agree (argmax),
    at each T in ``timesteps`` (one simulation)."""
    gen = torch.Generator().manual_seed(seed)
    calib = torch.randn(64, 3, 32, 32, generator=gen)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    snn = convert(net, calib, progress=False)
    with torch.no_grad():
        ref = net(x).argmax(-1)
    out = snn(x, max(timesteps))
    return snn, {t: (out[t - 1].argmax(-1) == ref).float().mean().item() for t in timesteps}


REPLICAS = {
    "resnet18": lambda: ResNet((2, 2, 2, 2), width=4),
    # at width 4 the default conversion agrees on 96 % at T = 64 (100 % at T = 16): its bias
    # calibration, tuned for T = 16, drifts at longer T on this very narrow net
    "resnet34": lambda: ResNet((3, 4, 6, 3), width=8),
    "vgg11_bn": lambda: VGG("A", div=16),
    "vgg16_bn": lambda: VGG("D", div=16),
    "mobilenet_v2": lambda: MobileNetV2(),
    "dense_inception": lambda: DenseInception(),
}


@pytest.mark.parametrize("name", list(REPLICAS))
def test_torchvision_replicas_convert_faithfully(name):
    torch.manual_seed(0)
    net = with_bn_stats(REPLICAS[name]())
    snn, agree = agreement(net)
    assert agree[64] >= 0.99 and agree[16] >= 0.95, agree
    if name.startswith(("resnet", "vgg", "dense")):  # max pooling stays max pooling
        assert any(isinstance(m, SpikingMaxPool) for m in snn.modules())
    if name == "mobilenet_v2":  # ReLU6: thresholds capped at 6
        assert all(float(m.v_th.max()) <= 6.0 for m in snn.if_nodes)


def test_issue_resnet_with_max_pooled_stem_and_shared_inplace_relu():
    """The issue's net: 65.6 % agreement at every T when max pooling became average pooling."""
    torch.manual_seed(0)
    net = with_bn_stats(SmallResNet(width=8))
    snn, agree = agreement(net, timesteps=(8, 64))
    assert agree[64] >= 0.99, agree
    # the shared ReLU module, called at five sites, became five IF layers
    assert len(snn.if_nodes) == 5


def test_spiking_max_pool_counts_are_the_max_of_accumulated_counts_in_both_orders():
    torch.manual_seed(0)
    T, B = 12, 5
    spikes = (torch.rand(T, B, 2, 6, 6) < 0.3).float()
    pool = SpikingMaxPool(nn.MaxPool2d(3, 2, 1))
    pool.chunk = T
    out = pool(spikes.flatten(0, 1)).unflatten(0, (T, B))
    expected = nn.MaxPool2d(3, 2, 1)(spikes.cumsum(0).flatten(0, 1)).unflatten(0, (T, B))
    torch.testing.assert_close(out.cumsum(0), expected)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # binary spikes in, binary spikes out
    # carried from chunk to chunk: two chunks give the same as one
    pool.reset_state()
    pool.chunk = 5
    first = pool(spikes[:5].flatten(0, 1))
    pool.chunk = 7
    second = pool(spikes[5:].flatten(0, 1))
    torch.testing.assert_close(torch.cat([first, second]), out.flatten(0, 1))


def test_max_pooled_net_simulates_the_same_time_major_chunked_and_layer_major():
    torch.manual_seed(0)
    net = with_bn_stats(VGG("A", div=32), shape=(3, 32, 32))
    x = torch.randn(6, 3, 32, 32)
    snn = convert(net, x, balance="act-max", calibrate="none")
    T = 10
    whole = simulate(snn, x, T)
    chunked = simulate(snn, x, T, chunk=3)
    layer_major = simulate(snn, [x[:4], x[4:]], T, lambda k, node, inputs: simulate_layer(node, inputs, T))
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(layer_major, whole)


class Clipped(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 5)
        self.act = nn.Hardtanh(0.0, 2.0) if kind == "hardtanh" else nn.ReLU6()

    def forward(self, x):
        h = self.conv(x)
        if self.kind == "clamp":
            h = torch.clamp(h, 0, 1.5)
        elif self.kind == "clamp_method":
            h = h.clamp(min=0.0, max=0.75)
        elif self.kind == "relu6_function":
            h = F.relu6(h)
        else:
            h = self.act(h)
        h = F.max_pool2d(h, 2)  # functional max pooling converts too
        return self.fc(torch.flatten(h, 1))


@pytest.mark.parametrize(
    ("kind", "cap"),
    [("relu6", 6.0), ("hardtanh", 2.0), ("clamp", 1.5), ("clamp_method", 0.75), ("relu6_function", 6.0)],
)
def test_clipped_relus_become_if_neurons_with_capped_thresholds(kind, cap):
    torch.manual_seed(0)
    net = Clipped(kind).eval()
    with torch.no_grad():
        net.conv.weight.mul_(4)  # activations well past the clip value
    x = torch.randn(64, 3, 8, 8)
    snn = convert(net, x, balance="act-max", calibrate="none")
    (node,) = snn.if_nodes
    assert node.cap == cap and float(node.v_th.max()) <= cap
    with torch.no_grad():
        ref = net(x)
    out = snn(x, 256)[-1] / 256
    assert (out - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_what_cannot_be_converted_is_refused_by_node_name():
    class Tanhish(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.Hardtanh(-1.0, 1.0)

        def forward(self, x):
            return self.act(self.fc(x))

    with pytest.raises(ConversionError, match=r"node 'act' .*Hardtanh\(-1.0, 1.0\).*clipped at a positive c"):
        convert(Tanhish(), torch.randn(4, 4), balance="act-max")

    class Indices(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.pool = nn.MaxPool2d(2, return_indices=True)

        def forward(self, x):
            return self.pool(F.relu(self.conv(x)))[0].flatten(1)

    with pytest.raises(ConversionError, match=r"node 'pool'.*return_indices"):
        convert(Indices(), torch.randn(4, 1, 8, 8), balance="act-max")


def _template_task(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes, each a fixed random 3x32x32 template plus noise: learnt in a few steps."""
    templates = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    y = torch.randint(0, 10, (n,), generator=gen)
    return templates[y] + torch.randn(n, 3, 32, 32, generator=gen), y


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "mobilenet_v2"])
def test_trained_replicas_convert_faithfully(name):
    """With random weights the ANN predicts one or two classes for every input, so agreement says
    little (an outside audit found that); trained briefly on a 10-class task, the ANN's
    predictions depend on the input, and the SNN must follow them."""
    torch.manual_seed(0)
    net = REPLICAS[name]()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(150):
        x, y = _template_task(64, gen)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _template_task(200, torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = net(x).argmax(-1)
    assert (ref == y).float().mean() >= 0.9 and ref.unique().numel() == 10  # a real classifier
    snn = convert(net, _template_task(64, torch.Generator().manual_seed(9))[0], progress=False)
    out = snn(x, 64)
    agree = {t: (out[t - 1].argmax(-1) == ref).float().mean().item() for t in (16, 64)}
    assert agree[16] >= 0.97 and agree[64] >= 0.97, agree
