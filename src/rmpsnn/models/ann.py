"""Conversion-friendly ANNs: ReLU (or QCFS) activations, average pooling, BN or dropout,
optional biases -- the recipe of RMP-SNN and of later ANN-to-SNN work.

Every builder takes ``num_classes``, ``activation`` ("relu" or "qcfs"), ``qcfs_levels``,
``bn`` (BatchNorm after each conv; folded into the conv on conversion) and ``bias``.
"""

from __future__ import annotations

from torch import nn

from ..errors import InputError
from .qcfs import QCFS
from .registry import register

__all__ = ["ann_cpu_net", "ann_resnet20", "ann_resnet34", "ann_vgg16", "make_activation"]


def make_activation(activation: str = "relu", levels: int = 8) -> nn.Module:
    if activation == "relu":
        return nn.ReLU()
    if activation == "qcfs":
        return QCFS(levels)
    raise InputError(f"unknown activation {activation!r}; valid values: relu, qcfs")


def _conv_block(cin, cout, act, bn, bias, levels, stride=1, k=3):
    layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias or not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(make_activation(act, levels))
    return layers


@register("ann_cpu_net")
def ann_cpu_net(
    num_classes: int = 10,
    activation: str = "relu",
    qcfs_levels: int = 8,
    bn: bool = True,
    bias: bool = False,
    width: tuple[int, int, int] = (64, 128, 256),
    in_channels: int = 3,
    image_size: int = 32,
) -> nn.Sequential:
    """The 3-conv network of the core benchmark: conv-BN-act x2, avgpool, conv-BN-act, avgpool,
    linear.  With the default widths and 32x32 input: 0.54 M parameters."""
    a, b, c = width
    return nn.Sequential(
        *_conv_block(in_channels, a, activation, bn, bias, qcfs_levels),
        *_conv_block(a, b, activation, bn, bias, qcfs_levels),
        nn.AvgPool2d(2),
        *_conv_block(b, c, activation, bn, bias, qcfs_levels),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c * (image_size // 4) ** 2, num_classes),
    )


_VGG16 = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


@register("ann_vgg16")
def ann_vgg16(
    num_classes: int = 10,
    activation: str = "relu",
    qcfs_levels: int = 8,
    bn: bool = True,
    bias: bool = False,
    dropout: float = 0.2,
    hidden: int = 4096,
) -> nn.Sequential:
    """VGG-16 (13 conv + 3 FC) with average pooling, as converted in RMP-SNN.  A global average
    pool before the classifier makes it accept 32x32 (CIFAR) and 224x224 (ImageNet) input.
    CIFAR-10 with hidden=4096: 33.6 M parameters."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG16:
        if v == "P":
            layers.append(nn.AvgPool2d(2))
        else:
            layers += _conv_block(cin, v, activation, bn, bias, qcfs_levels)
            cin = v
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i in range(2):
        layers += [
            nn.Linear(cin if i == 0 else hidden, hidden, bias=True),
            make_activation(activation, qcfs_levels),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, num_classes))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; activation after the addition.  Downsampling shortcut: avg-pool +
    1x1 conv (Diet-SNN / RMP-SNN style, conversion friendly)."""

    def __init__(self, cin, cout, stride, activation, bn, bias, levels):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias or not bn)
        self.bn1 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act1 = make_activation(activation, levels)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias or not bn)
        self.bn2 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        if stride != 1 or cin != cout:
            sc: list[nn.Module] = [nn.AvgPool2d(stride)] if stride != 1 else []
            sc.append(nn.Conv2d(cin, cout, 1, bias=bias or not bn))
            if bn:
                sc.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*sc)
        else:
            self.shortcut = nn.Identity()
        self.act2 = make_activation(activation, levels)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self, stem, blocks, widths, num_classes, activation, bn, bias, levels, first_stride=1):
        super().__init__()
        self.stem = stem
        layers = []
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                stride = (first_stride if i == 0 else 2) if j == 0 else 1
                layers.append(BasicBlock(cin, w, stride, activation, bn, bias, levels))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


@register("ann_resnet20")
def ann_resnet20(
    num_classes: int = 10, activation: str = "relu", qcfs_levels: int = 8, bn: bool = True, bias: bool = False
) -> nn.Module:
    """ResNet-20 of RMP-SNN / Diet-SNN for CIFAR: three 3x3 conv stem at 64 channels, avg-pool,
    basic blocks [2, 2, 2, 2] at 64/128/256/512 (avg-pool + 1x1 conv shortcuts), global avg-pool, FC."""
    stem = nn.Sequential(
        *_conv_block(3, 64, activation, bn, bias, qcfs_levels),
        *_conv_block(64, 64, activation, bn, bias, qcfs_levels),
        *_conv_block(64, 64, activation, bn, bias, qcfs_levels),
        nn.AvgPool2d(2),
    )
    return _ResNet(stem, [2, 2, 2, 2], [64, 128, 256, 512], num_classes, activation, bn, bias, qcfs_levels)


@register("ann_resnet34")
def ann_resnet34(
    num_classes: int = 1000,
    activation: str = "relu",
    qcfs_levels: int = 8,
    bn: bool = True,
    bias: bool = False,
) -> nn.Module:
    """ResNet-34 (ImageNet layout, [3, 4, 6, 3] basic blocks) with average pooling in the stem
    instead of max pooling, for conversion."""
    stem = nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=bias or not bn),
        *([nn.BatchNorm2d(64)] if bn else []),
        make_activation(activation, qcfs_levels),
        nn.AvgPool2d(3, stride=2, padding=1),
    )
    return _ResNet(stem, [3, 4, 6, 3], [64, 128, 256, 512], num_classes, activation, bn, bias, qcfs_levels)
