"""The typed options of the commands that are not training runs: ``convert``'s configuration
(:class:`ConvertConfig`, sections like a training config) and the flat options of ``demo``,
``quickstart``, ``evaluate``, ``report`` and ``export``.  Each option is declared once here
(:func:`rmpsnn.config.option`); the command line's flags, their help and the Python API derive
from it.  This module imports no torch (``rmpsnn --help`` reads it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import (
    Check,
    above,
    at_least,
    check_fields,
    imports_option,
    in_range,
    option,
    read_config,
    set_values,
)
from ..data.config import DataConfig
from ..errors import ConfigError

__all__ = [
    "ConvertConfig",
    "DemoOptions",
    "EvaluateOptions",
    "ExportOptions",
    "QuickstartOptions",
    "ReportOptions",
    "load_convert_config",
]

DEVICE_HELP = "cpu, cuda, cuda:N, mps, or auto (the first GPU if there is one)"
SEED_RANGE = in_range(0, 2**32 - 1)


def _balancers() -> list[str]:
    from ..conversion import available_balancers

    return ["auto", *available_balancers()]


def _maxpool_modes() -> list[str]:
    from ..conversion.graph import MAXPOOL_MODES

    return list(MAXPOOL_MODES)


def _calibrations() -> list[str]:
    from ..conversion import available_calibrations

    return ["auto", *available_calibrations()]


# ----------------------------------------------------------------------------- `rmpsnn convert`
@dataclass
class AnnSection:
    checkpoint: str = option(
        "runs/ann.safetensors",
        help="checkpoint of `rmpsnn train-ann` (a file or its run directory), or a user model's weights "
        "(.safetensors, or a .pt/.pth state dict loaded with weights_only=True)",
        flags=("--ann",),
    )
    model: str | None = option(
        None,
        help="zoo model name (null: the one stored in the checkpoint) or a user's model, "
        "path/to/file.py:ClassOrFactory or package.module:Name",
        flags=("--model",),
    )
    kwargs: dict = option(default_factory=dict, help="arguments of a user model's class or factory")
    mean: str | None = option(
        None, help='a user model\'s input mean per channel, comma-separated ("0.49,0.48,0.45"; null: the '
        "training images' mean)",
    )  # fmt: skip
    std: str | None = option(
        None, help="a user model's input std per channel, comma-separated (null: the training images' std)"
    )
    input_shape: str | None = option(
        None, help='a user model\'s input per sample ("3,32,32"), checked against the data'
    )


@dataclass
class ConversionSection:
    reset: str = option(
        "both",
        help="soft = RMP neuron, hard = reset to zero, both = compare",
        choices=("soft", "hard", "both"),
        flags=("--reset",),
    )
    balance: str = option(
        "auto",
        help="threshold balancing (rmpsnn list balancers); auto = mse for ReLU ANNs, qcfs for QCFS ANNs",
        choices=_balancers,
        choices_help="a registered balancer",
        flags=("--balance",),
    )
    calibrate: str = option(
        "auto",
        help="post-conversion calibration; auto = bias (layer-wise bias correction) with mse thresholds, "
        "none with any other balancing (it never costs accuracy there) and for QCFS",
        choices=_calibrations,
        choices_help="a calibration method",
        flags=("--calibrate",),
    )
    calibration_timesteps: int = option(
        16,
        help="T that mse thresholds and calibration target",
        check=at_least(1),
        flags=("--calibration-timesteps",),
    )
    percentile: float = option(
        99.99,
        help="percentile of the activations for --balance percentile",
        check=in_range(0, 100, low_open=True),
        flags=("--percentile",),
    )
    scale: float = option(
        1.0, help="multiply every threshold by this factor", check=above(0), flags=("--scale",)
    )
    per_channel: bool | None = option(
        None,
        help="one threshold per channel (null: per channel for mse, per layer otherwise)",
        flags=("--per-channel",),
    )
    encoding: str = option(
        "direct", help="input encoding", choices=("direct", "poisson"), flags=("--encoding",)
    )
    v_init: str = option(
        "auto",
        help="initial potential: auto (half when calibrating or for QCFS, else none), half, none, "
        "or a fraction of θ",
        flags=("--v-init",),
    )
    signed: bool | None = option(
        None,
        help="signed IF neurons that take back over-fired spikes (null: on with soft reset and a θ/2 start)",
        flags=("--signed",),
    )
    balance_timesteps: int = option(
        64, help="steps simulated for --balance spike-max", check=at_least(1), flags=("--balance-timesteps",)
    )
    calib_images: int = option(
        128, help="training images for balancing and calibration", check=at_least(1), flags=("--calib",)
    )
    maxpool: str = option(
        "spiking",
        help="max pooling: spiking (gated by accumulated spike counts), avg (average pooling, e.g. "
        "for NIR), error (refuse it)",
        choices=_maxpool_modes,
        choices_help="a max-pooling mode",
        flags=("--maxpool",),
    )


@dataclass
class EvalSection:
    timesteps: int = option(
        128, help="largest T; accuracy at T = 1, 2, 4, ..., T", check=at_least(1), flags=("--timesteps",)
    )
    batch_size: int = option(
        100, help="test images simulated at once", check=at_least(1), flags=("--batch-size",)
    )


@dataclass
class ConvertRunSection:
    seed: int = option(
        0, help="seed of the calibration subset and Poisson input", check=SEED_RANGE, flags=("--seed",)
    )
    device: str = option("cpu", help=DEVICE_HELP, flags=("--device",))
    out: str = option(
        "runs/conversion.json", help="result JSON; a .png/.svg figure beside it", flags=("--out",)
    )
    imports: list = imports_option(
        "modules or .py files imported first (user data sets, models, balancers); stored with the run"
    )


@dataclass
class ConvertConfig:
    """``rmpsnn convert``'s configuration (``configs/convert.yaml``); the test images are
    ``data.test_limit`` class-balanced images of the test split (all of it when null)."""

    ann: AnnSection = field(default_factory=AnnSection)
    data: DataConfig = field(default_factory=DataConfig)
    conversion: ConversionSection = field(default_factory=ConversionSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: ConvertRunSection = field(default_factory=ConvertRunSection)

    def check(self) -> None:
        check_fields(self)
        self.data.check()
        self.v_init()
        for key in ("mean", "std", "input_shape"):
            self.numbers(key)

    def v_init(self) -> str | float | None:
        """``conversion.v_init`` as :func:`convert` takes it."""
        text = self.conversion.v_init
        if text in ("auto", "half"):
            return text
        if text == "none":
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):  # also what float() makes of a word
            raise ConfigError(
                f"conversion.v_init = {text!r} is not allowed; give auto, half, none, or a finite fraction "
                f"of θ (e.g. 0.5)"
            )
        return value

    def numbers(self, key: str) -> list[float] | None:
        """``ann.mean`` / ``ann.std`` / ``ann.input_shape`` as numbers (None when not set)."""
        text = getattr(self.ann, key)
        if text is None:
            return None
        try:
            values = [float(v) for v in str(text).replace("[", "").replace("]", "").split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"ann.{key} = {text!r}: give comma-separated numbers, e.g. 0.5,0.5,0.5")
        if key == "std" and min(values) <= 0:
            raise ConfigError(f"ann.std = {text!r}: every std must be > 0")
        if key == "input_shape" and not all(v >= 1 and v == int(v) for v in values):
            raise ConfigError(f"ann.input_shape = {text!r}: give positive integers, e.g. 3,32,32")
        return values


def load_convert_config(source=None, overrides=None) -> ConvertConfig:
    """A checked :class:`ConvertConfig` from a YAML file (or dict) and ``section.key=value``
    overrides; the plugins stored with the ANN's run (``run.imports``) are imported first."""
    from ..plugins import import_stored

    cfg = read_config(ConvertConfig, source)
    set_values(cfg, overrides)
    import_stored(cfg.ann.checkpoint, cfg.run.imports)  # the user code the ANN was trained with
    cfg.check()
    return cfg


# ----------------------------------------------------------------------------- flat options
@dataclass
class DemoOptions:
    """``rmpsnn demo``: a short tour of the spiking-neuron core (about a minute on a CPU)."""

    timesteps: int = option(4, help="time steps of the spiking CNN", check=at_least(1))
    batch: int = option(32, help="batch size", check=at_least(1))
    steps: int = option(40, help="training steps", check=at_least(1))
    device: str = option("cpu", help=DEVICE_HELP)
    seed: int = option(0, help="random seed", check=SEED_RANGE)
    rounds: int = option(5, help="timing rounds of part 3 (0 skips it)", check=at_least(0))


def _increasing_steps(v: list) -> bool:
    whole = all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in v)
    return bool(v) and whole and v == sorted(set(v))


INCREASING_STEPS = Check(_increasing_steps, "must be increasing whole numbers >= 1")


@dataclass
class QuickstartOptions:
    """``rmpsnn quickstart``: both routes on offline data in minutes (conversion soft vs hard reset,
    RMP-Loss on/off) and a report."""

    data: str = option("auto", help="auto (shared CIFAR-10, else digits), shared, digits, or a path")
    epochs: int = option(3, help="epochs of the ANN and of each direct run", check=at_least(1))
    train_images: int = option(8000, help="CIFAR-10 training subset of the ANN", check=at_least(1))
    direct_train_images: int = option(
        2000, help="CIFAR-10 training subset of each direct run", check=at_least(1)
    )
    test_images: int = option(
        2000,
        help="class-balanced CIFAR-10 test subset (conversion and direct runs; the 95 % intervals need it)",
        check=at_least(1),
    )
    hard_reset_images: int = option(
        4000,
        help="test images of hard reset's comparison with its ANN: test_images and further ones "
        "(hard reset disagrees with the ANN on more images, so its interval needs more)",
        check=at_least(1),
    )
    timesteps: list = option(
        default_factory=lambda: [1, 2, 4, 8, 12, 16],
        help="T of the conversion curve (one simulation of the longest; the read-out accumulates)",
        check=INCREASING_STEPS,
    )
    device: str = option("cpu", help=DEVICE_HELP)
    seed: int = option(0, help="random seed", check=SEED_RANGE)
    out: str = option("runs/quickstart", help="output directory (runs, figures, report)")


@dataclass
class EvaluateOptions:
    """``rmpsnn evaluate``: test accuracy and quantization error of a trained spiking model."""

    checkpoint: str = option(help="a run directory or a .safetensors written by train")
    timesteps: int | None = option(
        None, help="evaluate at this T instead of the trained one", check=at_least(1)
    )
    data: list = option(
        default_factory=list, help="data overrides, e.g. --data root=/data/cifar test_limit=1000"
    )
    device: str = option("auto", help=DEVICE_HELP)
    out: str | None = option(None, help="also write the result as JSON here")


@dataclass
class ReportOptions:
    """``rmpsnn report``: Markdown + HTML report of training runs and conversion results."""

    runs: list = option(help="run directories of `train`, JSON results of `convert`")
    out: str = option("runs/report", help="output directory")
    images: int = option(1000, help="test images for the monitored evaluation", check=at_least(1))
    title: str | None = option(None, help="report title (default: from the runs)")
    device: str = option("auto", help=DEVICE_HELP)


@dataclass
class ExportOptions:
    """``rmpsnn export``: export a trained spiking model to NIR or safetensors + JSON."""

    checkpoint: str = option(help="run directory or .safetensors of `rmpsnn train`")
    format: str = option(
        "nir",
        help="nir (Neuromorphic Intermediate Representation) or safetensors + JSON",
        choices=("nir", "safetensors"),
    )
    target: str | None = option(
        None,
        help="shape the NIR graph for this simulator's importer (default: rmpsnn's exact graph)",
        choices=("snntorch", "norse", "spikingjelly"),
    )
    out: str = option("runs/export", help="a .nir file or a directory")
    input_shape: list | None = option(None, help="C H W of one input (default: from the run)")
    allow_lossy_reset: bool = option(
        False,
        help="export soft-reset neurons to NIR (other tools will simulate reset-to-zero; rmpsnn restores it)",
    )
