"""Spiking networks for direct training (RMP-Loss setting), built from the core modules.

All take static images ``[B, C, H, W]`` (direct encoding: the first conv + tdBN runs once and its
output is repeated over the ``timesteps``, then LIF) or event frames ``[T, B, C, H, W]`` (the
first conv runs over all T*B frames), and return the integrator read-out ``[B, classes]``
(mean over time of the last layer, RMP-Loss eq. 4).  tdBN everywhere, with α = 1/√2 on the BNs
whose outputs are summed in a residual block and 1 elsewhere (Zheng et al., AAAI 2021).
Neurons: ``LIF`` with the given ``tau``/``v_th``/``surrogate``/``reset`` (RMP-Loss defaults), or
another registered kind (:data:`rmpsnn.neurons.NEURONS`: ``neuron="plif"``, ``"if"``, ...) or
``neuron=callable`` (e.g. ``create("resnet19", neuron="if", reset="soft", v_th=1.0)``).
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from ..errors import InputError
from ..functional.params import LIF_PARAMS, check_number
from ..layers import TdBatchNorm2d, TimeFolded, call_timesteps, repeat_time, residual_alpha
from ..neurons import NEURONS, OutputIntegrator
from .registry import register

__all__ = [
    "SpikingNet",
    "spiking_cpu_net",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_resnet20",
    "spiking_resnet34",
    "spiking_vgg16",
]


def _readout_option(factory):
    """Adds ``readout="mean"|"final"`` to a model factory: what the integrator returns (RMP-Loss
    eq. 4: the final potential ``u[T]``, or ``u[T] / T``; only the scale of the logits differs)."""

    @functools.wraps(factory)
    def build(*args, readout: str = "mean", **kwargs):
        model = factory(*args, **kwargs)
        model.readout = OutputIntegrator(readout)
        return model

    # the factory's parameters and ``readout``: without this, ``inspect.signature`` follows
    # ``__wrapped__`` to the factory and ``readout`` is invisible to whoever asks the builder
    # what it takes (the trainer then never passed ``model.readout``)
    sig = inspect.signature(factory)
    params = list(sig.parameters.values())
    extra = inspect.Parameter("readout", inspect.Parameter.KEYWORD_ONLY, default="mean", annotation=str)
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    build.__signature__ = sig.replace(parameters=[*params[:at], extra, *params[at:]])
    return build


def _conv(cin, cout, k=3, stride=1):
    return TimeFolded(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False))


class SpikingNet(nn.Module):
    """Stem (conv + tdBN, direct encoding) -> LIF -> body -> read-out."""

    def __init__(
        self,
        stem_conv: nn.Conv2d,
        stem_bn: TdBatchNorm2d,
        body: nn.Module,
        head: nn.Module,
        timesteps: int,
        neuron_kwargs: dict,
    ):
        super().__init__()
        if timesteps < 1:
            raise InputError(f"timesteps must be >= 1, got {timesteps}")
        self.timesteps = timesteps
        self.stem_conv, self.stem_bn = stem_conv, stem_bn
        self.stem_lif = _make_neuron(neuron_kwargs)
        self.body, self.head = body, head
        self.readout = OutputIntegrator("mean")

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """The read-out ``[B, classes]`` (``readout="all"``: ``[T, B, classes]``) of a static batch
        ``[B, C, H, W]`` over ``timesteps`` steps (default: the model's own, ``self.timesteps``) or
        of event frames ``[T, B, C, H, W]`` over their T (:func:`~rmpsnn.layers.call_timesteps`)."""
        what = type(self).__name__
        if x.ndim == 4:  # static image: the first layer's current is the same at every step
            steps = call_timesteps(self.timesteps, timesteps, what=what)
            y = repeat_time(self.stem_bn(self.stem_conv(x)), steps)
        elif x.ndim == 5:  # event frames [T, B, C, H, W]
            T, B = x.shape[:2]
            call_timesteps(self.timesteps, timesteps, what=what, input_steps=T)
            y = self.stem_bn(self.stem_conv(x.flatten(0, 1))).unflatten(0, (T, B))
        else:
            raise InputError(
                f"{type(self).__name__}: expected a static batch [B, C, H, W] or event frames "
                f"[T, B, C, H, W], got shape {tuple(x.shape)}"
            )
        return self.readout(self.head(self.body(self.stem_lif(y))))


class SpikingBasicBlock(nn.Module):
    """conv-tdBN-LIF-conv-tdBN(α=1/√2) + shortcut, then LIF after the addition."""

    def __init__(self, cin, cout, stride, neuron_kwargs, shortcut="conv", v_th=LIF_PARAMS.v_th):
        super().__init__()
        a = residual_alpha()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride), TdBatchNorm2d(cout, v_th=v_th)
        self.lif1 = _make_neuron(neuron_kwargs)
        self.conv2, self.bn2 = _conv(cout, cout, 3), TdBatchNorm2d(cout, alpha=a, v_th=v_th)
        if stride != 1 or cin != cout:
            if shortcut == "avgpool":  # Diet-SNN: average pool then 1x1 conv
                pre = [nn.AvgPool2d(stride)] if stride != 1 else []
                self.shortcut = nn.Sequential(
                    TimeFolded(*pre, nn.Conv2d(cin, cout, 1, bias=False)),
                    TdBatchNorm2d(cout, alpha=a, v_th=v_th),
                )
            else:
                self.shortcut = nn.Sequential(
                    _conv(cin, cout, 1, stride), TdBatchNorm2d(cout, alpha=a, v_th=v_th)
                )
        else:
            self.shortcut = nn.Identity()
        self.lif2 = _make_neuron(neuron_kwargs)

    def forward(self, x):
        out = self.lif1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.lif2(out + self.shortcut(x))


def _neuron_kwargs(tau, v_th, surrogate, reset, neuron="lif"):
    if not callable(neuron) and neuron not in NEURONS:
        raise InputError(
            f"{NEURONS.unknown_message(neuron)}; or pass a callable that takes tau, v_th, surrogate "
            f"and reset and returns a module"
        )
    check_number(v_th, "v_th")  # before the tdBN layers read it
    return {"tau": tau, "v_th": v_th, "surrogate": surrogate, "reset": reset, "neuron": neuron}


def _make_neuron(nk: dict) -> nn.Module:
    """One spiking layer: a registered kind (:data:`rmpsnn.neurons.NEURONS`: ``"lif"``, ``"if"``,
    ``"plif"``, ...) or a callable, called as ``f(tau=, v_th=, surrogate=, reset=)``."""
    kw = {k: v for k, v in nk.items() if k != "neuron"}
    return NEURONS.resolve(nk.get("neuron", "lif"))(**kw)


def _stage(cin, widths, blocks, first_stride, nk, shortcut, v_th):
    layers, c = [], cin
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(n):
            stride = (first_stride if i == 0 else 2) if j == 0 else 1
            layers.append(SpikingBasicBlock(c, w, stride, nk, shortcut, v_th))
            c = w
    return nn.Sequential(*layers), c


def _gap_head(c, num_classes):
    return TimeFolded(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


# the LIF defaults, from their one definition (NeuronParams)
_DEFAULTS = {"tau": LIF_PARAMS.tau, "v_th": LIF_PARAMS.v_th, "surrogate": LIF_PARAMS.surrogate.name,
             "reset": LIF_PARAMS.reset, "neuron": "lif"}  # fmt: skip


def _build_resnet(
    stem_k,
    stem_stride,
    stem_c,
    widths,
    blocks,
    shortcut,
    num_classes,
    timesteps,
    in_channels,
    extra_stem=(),
    first_stride=1,
    **nkw,
):
    nk = _neuron_kwargs(**{**_DEFAULTS, **nkw})
    stem_conv = nn.Conv2d(in_channels, stem_c, stem_k, stride=stem_stride, padding=stem_k // 2, bias=False)
    stem_bn = TdBatchNorm2d(stem_c, v_th=nk["v_th"])
    body, c = _stage(stem_c, widths, blocks, first_stride, nk, shortcut, nk["v_th"])
    if extra_stem:
        body = nn.Sequential(*extra_stem, body)
    return SpikingNet(stem_conv, stem_bn, body, _gap_head(c, num_classes), timesteps, nk)


@register("resnet19", kind="snn")
@_readout_option
def spiking_resnet19(num_classes: int = 10, timesteps: int = 4, in_channels: int = 3, **neuron) -> SpikingNet:
    """ResNet-19 of the tdBN paper as the RMP-Loss authors' group builds it: 3x3 stem 3->128 at
    stride 1, basic blocks [3, 3, 2] at 128/256/512, spike after the residual add, global average
    pool, one FC.  CIFAR-10: 12.6 M parameters."""
    layout = {"stem_k": 3, "stem_stride": 1, "stem_c": 128, "widths": [128, 256, 512], "blocks": [3, 3, 2]}
    return _build_resnet(**layout, shortcut="conv", num_classes=num_classes, timesteps=timesteps,
                         in_channels=in_channels, **neuron)  # fmt: skip


@register("resnet20", kind="snn")
@_readout_option
def spiking_resnet20(num_classes: int = 10, timesteps: int = 4, in_channels: int = 3, **neuron) -> SpikingNet:
    """ResNet-20 in the Diet-SNN layout: three 3x3 conv stem at 64 channels, avg-pool, basic blocks
    [2, 2, 2, 2] at 64/128/256/512 with avg-pool + 1x1 conv shortcuts.  CIFAR-10: 11.3 M parameters."""
    nk = _neuron_kwargs(**{**_DEFAULTS, **neuron})
    extra = nn.Sequential(
        _conv(64, 64), TdBatchNorm2d(64, v_th=nk["v_th"]), _make_neuron(nk),
        _conv(64, 64), TdBatchNorm2d(64, v_th=nk["v_th"]), _make_neuron(nk),
        TimeFolded(nn.AvgPool2d(2)),
    )  # fmt: skip
    layout = {
        "stem_k": 3,
        "stem_stride": 1,
        "stem_c": 64,
        "widths": [64, 128, 256, 512],
        "blocks": [2, 2, 2, 2],
    }
    return _build_resnet(**layout, shortcut="avgpool", num_classes=num_classes, timesteps=timesteps,
                         in_channels=in_channels, extra_stem=(extra,), **neuron)  # fmt: skip


def _imagenet_resnet(blocks, num_classes, timesteps, in_channels, neuron) -> SpikingNet:
    """ImageNet stem (7x7/2 conv + tdBN + LIF, 3x3/2 max-pool), basic blocks at 64/128/256/512."""
    layout = {"stem_k": 7, "stem_stride": 2, "stem_c": 64, "widths": [64, 128, 256, 512], "blocks": blocks}
    pool = TimeFolded(nn.MaxPool2d(3, 2, 1))
    return _build_resnet(**layout, shortcut="conv", num_classes=num_classes, timesteps=timesteps,
                         in_channels=in_channels, extra_stem=(pool,), **neuron)  # fmt: skip


@register("resnet18", kind="snn")
@_readout_option
def spiking_resnet18(
    num_classes: int = 1000, timesteps: int = 4, in_channels: int = 3, **neuron
) -> SpikingNet:
    """ResNet-18, ImageNet stem, blocks [2, 2, 2, 2].  ImageNet: 11.7 M parameters."""
    return _imagenet_resnet([2, 2, 2, 2], num_classes, timesteps, in_channels, neuron)


@register("resnet34", kind="snn")
@_readout_option
def spiking_resnet34(
    num_classes: int = 1000, timesteps: int = 4, in_channels: int = 3, **neuron
) -> SpikingNet:
    """ResNet-34, ImageNet stem, blocks [3, 4, 6, 3].  ImageNet: 21.8 M parameters."""
    return _imagenet_resnet([3, 4, 6, 3], num_classes, timesteps, in_channels, neuron)


@register("vgg16", kind="snn")
@_readout_option
def spiking_vgg16(num_classes: int = 10, timesteps: int = 4, in_channels: int = 3, **neuron) -> SpikingNet:
    """VGG-16: 13 conv-tdBN-LIF layers with average pooling, global average pool, one FC.
    CIFAR-10: 14.7 M parameters."""
    nk = _neuron_kwargs(**{**_DEFAULTS, **neuron})
    cfg = [64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]
    layers, c = [], 64
    for v in cfg:
        if v == "P":
            layers.append(TimeFolded(nn.AvgPool2d(2)))
        else:
            layers += [_conv(c, v), TdBatchNorm2d(v, v_th=nk["v_th"]), _make_neuron(nk)]
            c = v
    stem_conv = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
    return SpikingNet(
        stem_conv,
        TdBatchNorm2d(64, v_th=nk["v_th"]),
        nn.Sequential(*layers),
        _gap_head(c, num_classes),
        timesteps,
        nk,
    )


@register("cpu_net", kind="snn")
@_readout_option
def spiking_cpu_net(
    num_classes: int = 10,
    timesteps: int = 4,
    in_channels: int = 3,
    width: tuple[int, int, int] = (64, 128, 256),
    image_size: int = 32,
    **neuron,
) -> SpikingNet:
    """The 3-conv network of the core benchmark (conv-tdBN-LIF x2, avg-pool, conv-tdBN-LIF,
    avg-pool, linear), small enough to train on a CPU.  Default widths, 32x32: 0.54 M parameters."""
    nk = _neuron_kwargs(**{**_DEFAULTS, **neuron})
    a, b, c = width
    body = nn.Sequential(
        _conv(a, b),
        TdBatchNorm2d(b, v_th=nk["v_th"]),
        _make_neuron(nk),
        TimeFolded(nn.AvgPool2d(2)),
        _conv(b, c),
        TdBatchNorm2d(c, v_th=nk["v_th"]),
        _make_neuron(nk),
        TimeFolded(nn.AvgPool2d(2)),
    )
    head = TimeFolded(nn.Flatten(), nn.Linear(c * (image_size // 4) ** 2, num_classes))
    stem_conv = nn.Conv2d(in_channels, a, 3, padding=1, bias=False)
    return SpikingNet(stem_conv, TdBatchNorm2d(a, v_th=nk["v_th"]), body, head, timesteps, nk)
