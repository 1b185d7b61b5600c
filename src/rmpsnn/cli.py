"""The ``rmpsnn`` command.

rmpsnn --version
rmpsnn quickstart [--data auto] [--epochs 2]   # both routes on offline data, with a report
rmpsnn demo [--timesteps 4] [--device cpu]     # a short tour of the neuron core
rmpsnn train-ann --model ann_cpu_net --epochs 10 --out runs/ann.safetensors
rmpsnn convert --ann runs/ann.safetensors --reset both --timesteps 1024 --out runs/conversion.json
rmpsnn train --config configs/cpu.yaml [section.key=value ...]     # direct training, RMP-Loss
rmpsnn train --resume RUN_DIR                                      # continue a stopped run
rmpsnn evaluate --checkpoint RUN_DIR|FILE.safetensors [--timesteps T]
rmpsnn report RUN_DIR [RUN_DIR|conversion.json ...] --out runs/report
rmpsnn export --checkpoint RUN_DIR --format nir|safetensors --out runs/export
torchrun --nproc_per_node=N -m rmpsnn train --config ...           # distributed data parallel
"""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__
from .errors import InputError


def _demo(args: argparse.Namespace) -> int:
    from .app.demo import run_demo

    return run_demo(args)


# train-ann's shorthand options: each is one dotted override of the ANN config
_ANN_FLAGS = {
    "model": "model.name",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "activation": "model.kwargs.activation",
    "qcfs_levels": "model.kwargs.qcfs_levels",
    "width": "model.kwargs.width",
    "train_limit": "data.train_limit",
    "test_limit": "data.test_limit",
    "time_budget": "run.time_budget_min",
    "seed": "run.seed",
    "device": "run.device",
}


def _ann_overrides(args: argparse.Namespace) -> dict:
    overrides = _flag_overrides(args, _ANN_FLAGS)
    if args.no_bn:
        overrides["model.kwargs.bn"] = False
    if args.bias:
        overrides["model.kwargs.bias"] = True
    return overrides


def _train_ann(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .training.ann import ann_config, fit_ann, save_ann
    from .training.trainer import resume_config

    if args.resume is not None:
        if args.config is not None:
            raise InputError("give either --config or --resume, not both (a resumed run keeps its config)")
        run_dir = Path(args.resume)
        cfg = resume_config(run_dir, args.overrides)
    else:
        cfg = ann_config(args.config, _ann_overrides(args))
        run_dir = cfg.run_dir()
    model, info = fit_ann(cfg, run_dir, resume=args.resume is not None)
    save_ann(args.out, model, cfg, info)
    print(f"test accuracy {info['test_accuracy']:.4f}; checkpoint {args.out}; run directory {run_dir}")
    return 0


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# convert's shorthand options: each is one dotted override of the convert config
_CONVERT_FLAGS = {
    "ann": "ann.checkpoint",
    "model": "ann.model",
    "reset": "conversion.reset",
    "balance": "conversion.balance",
    "calibrate": "conversion.calibrate",
    "calibration_timesteps": "conversion.calibration_timesteps",
    "percentile": "conversion.percentile",
    "scale": "conversion.scale",
    "per_channel": "conversion.per_channel",
    "encoding": "conversion.encoding",
    "v_init": "conversion.v_init",
    "signed": "conversion.signed",
    "balance_timesteps": "conversion.balance_timesteps",
    "calib": "conversion.calib_images",
    "timesteps": "eval.timesteps",
    "test_images": "data.test_limit",
    "batch_size": "eval.batch_size",
    "seed": "run.seed",
    "device": "run.device",
    "out": "run.out",
}


def _flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    """``key=value`` overrides, then the shorthand options the user gave (``--data`` is a spec
    that sets ``data.dataset`` and ``data.root``)."""
    from .config import parse_override
    from .data import DataConfig

    overrides = dict(map(parse_override, args.overrides))
    if args.data is not None:
        spec = DataConfig.from_spec(args.data)
        overrides.update({"data.dataset": spec.dataset, "data.root": spec.root})
    for flag, key in flags.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = list(value) if isinstance(value, list) else value
    return overrides


def _convert(args: argparse.Namespace) -> int:
    from .app.experiment import load_convert_config, run_conversion

    cfg = load_convert_config(args.config, _flag_overrides(args, _CONVERT_FLAGS))
    # a bar on a terminal, else a line per layer / step
    res = run_conversion(cfg, progress=None if sys.stderr.isatty() else _stderr_line)
    print(f"wrote {', '.join(res['files'])}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training import train

    if args.config is None and args.resume is None and not args.overrides:
        raise InputError(
            "give --config CONFIG.yaml (see configs/), overrides of the defaults, or --resume RUN_DIR"
        )
    if args.config is not None and args.resume is not None:
        raise InputError("give either --config or --resume, not both (a resumed run keeps its config)")
    summary = train(args.config, args.overrides, resume=args.resume)
    return 0 if summary else 1


def _evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .training.runs import load_run
    from .training.trainer import evaluate_model

    overrides = [f"data.{k}" for k in args.data_overrides or []]
    run = load_run(args.checkpoint, device=args.device, overrides=overrides, timesteps=args.timesteps)
    model, info = run.model, run.info
    ev = evaluate_model(model, run.data.test(), v_th=run.v_th, device=args.device, data=run.data)
    steps = getattr(model, "timesteps", None)
    result = {"checkpoint": str(run.checkpoint), "model": info["model"], "timesteps": steps, **ev}
    q = ev["quantization_error"]
    print(
        f"{info['model']}{f' T={steps}' if steps else ''}: test accuracy {ev['accuracy']:.4f} "
        f"on {ev['images']} images"
        + (f", quantization error {q:.4f} (mean Dis^2 {ev['quantization_mse']:.4f})" if q is not None else "")
    )
    for name, q in ev["per_layer"].items():
        print(f"  {name:<24} |Dis| {q['mean_abs']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .app.report import write_report

    paths = write_report(args.runs, args.out, images=args.images, device=args.device, title=args.title)
    print(f"wrote {paths['markdown']} and {paths['html']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import inspect
    from pathlib import Path

    import torch

    from .models.registry import builder
    from .training import load_model, resolve_checkpoint

    model, info = load_model(resolve_checkpoint(args.checkpoint))
    info_clean = {k: v for k, v in info.items() if k not in ("model", "kwargs")}
    if args.format == "safetensors":
        from .export import export_safetensors

        files = export_safetensors(
            model, args.out, model_name=info["model"], model_kwargs=info["kwargs"], **info_clean
        )
        print(f"wrote {files['weights']} and {files['architecture']}")
        return 0
    from .export import to_nir

    data = info.get("data") or {}
    # the input: as given, as recorded by the data the model was trained on, or as the model's
    # own arguments fix it (builders with an image_size); never guessed
    declared = {k: p.default for k, p in inspect.signature(builder(info["model"])).parameters.items()} | info[
        "kwargs"
    ]
    if args.input_shape:
        shape = tuple(args.input_shape)
    elif "input_shape" in data:
        shape = tuple(data["input_shape"])
    elif isinstance(declared.get("image_size"), int) and isinstance(declared.get("in_channels"), int):
        shape = (declared["in_channels"], declared["image_size"], declared["image_size"])
    else:
        raise InputError(
            f"{args.checkpoint} records no input shape and {info['model']} takes any image size; give it: "
            f"--input-shape C H W"
        )
    sample = torch.zeros(1, *shape)
    if data.get("time_major", shape[0] == 2):  # event frames [T, B, 2, H, W]
        sample = torch.zeros(getattr(model, "timesteps", 1), 1, *shape)
    out = Path(args.out)
    out = out if out.suffix == ".nir" else out / "model.nir"
    out.parent.mkdir(parents=True, exist_ok=True)
    to_nir(model, sample, out, allow_lossy_reset=args.allow_lossy_reset)
    print(f"wrote {out} (input {list(shape)} per step, {getattr(model, 'timesteps', '?')} steps)")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from .app.quickstart import run_quickstart

    return run_quickstart(args)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or a negative count is a mistake, never 'all')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _finite(low: float, *, inclusive: bool = False):
    """argparse type: a finite float above ``low`` (or equal to it when ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or abs(value) > 3.4e38:
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value

    return parse


DEVICE_HELP = "cpu, cuda, cuda:N, mps, or auto (the first GPU if there is one)"


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless there is none to show (None, a flag, a required option)."""

    def _get_help_string(self, action):
        if action.default is None or action.required or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


class _CommandParser(argparse.ArgumentParser):
    """Sub-command parsers show every option's default in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rmpsnn",
        description="Spiking neural networks accurate at few timesteps: RMP (soft-reset) ANN-to-SNN "
        "conversion and RMP-Loss direct training.",
    )
    p.add_argument("--version", action="version", version=f"rmpsnn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    d = sub.add_parser("demo", help="a short tour of the spiking-neuron core (about a minute on a CPU)")
    d.add_argument("--timesteps", type=_positive_int, default=4, help="time steps of the spiking CNN")
    d.add_argument("--batch", type=_positive_int, default=32, help="batch size")
    d.add_argument("--steps", type=_positive_int, default=40, help="training steps")
    d.add_argument("--device", default="cpu", help=DEVICE_HELP)
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--rounds", type=int, default=5, help="timing rounds of part 3 (0 skips it)")
    d.set_defaults(func=_demo)

    q = sub.add_parser(
        "quickstart",
        help="both routes on offline data in ~4 min: conversion soft vs hard reset, RMP-Loss on/off, report",
    )
    q.add_argument(
        "--data", default="auto", help="auto (shared CIFAR-10, else digits), shared, digits, or a path"
    )
    q.add_argument("--epochs", type=_positive_int, default=3, help="epochs of the ANN and of each direct run")
    q.add_argument(
        "--train-images",
        type=_positive_int,
        default=8000,
        help="CIFAR-10 training subset (the direct runs use half)",
    )
    q.add_argument(
        "--test-images",
        type=_positive_int,
        default=1000,
        help="class-balanced CIFAR-10 test subset (conversion and direct runs; 95 %% intervals need it)",
    )
    q.add_argument(
        "--max-timesteps", type=_positive_int, default=32, help="largest T of the conversion curve"
    )
    q.add_argument("--device", default="cpu", help=DEVICE_HELP)
    q.add_argument("--seed", type=int, default=0, help="random seed")
    q.add_argument("--out", default="runs/quickstart", help="output directory (runs, figures, report)")
    q.set_defaults(func=_quickstart)

    from ._choices import ANN_MODELS, BALANCE_METHODS, CALIBRATION_METHODS

    t = sub.add_parser(
        "train-ann",
        help="train a conversion-friendly ANN (ReLU or QCFS) and save it",
        description="Train an ANN with the trainer of `rmpsnn train`: the recipe of "
        "rmpsnn.training.ANN_DEFAULTS, then --config, then section.key=value overrides, then the "
        "shorthand options below (each one override). The run directory (run.out) holds metrics and "
        "checkpoints (resumable with --resume); --out is the final model for `rmpsnn convert`. "
        "E.g. `rmpsnn train-ann --config configs/ann_cpu.yaml optim.epochs=5`.",
    )
    t.add_argument("--config", help="YAML configuration (see configs/ann_*.yaml)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help="configuration overrides")
    t.add_argument("--model", choices=ANN_MODELS, help="ANN architecture (model.name; default ann_cpu_net)")
    t.add_argument(
        "--data",
        help="data spec: 'shared' (../shared/data CIFAR-10), 'digits', a CIFAR root or an image folder/zip "
        "(sets data.dataset and data.root)",
    )
    t.add_argument("--epochs", type=_positive_int, help="training epochs (optim.epochs; default 10)")
    t.add_argument("--batch-size", type=_positive_int, help="images per SGD step (optim.batch_size; 128)")
    t.add_argument("--lr", type=_finite(0), help="peak learning rate, warm-up then cosine (optim.lr; 0.05)")
    t.add_argument("--weight-decay", type=_finite(0, inclusive=True), help="optim.weight_decay (5e-4)")
    t.add_argument(
        "--activation",
        choices=["relu", "qcfs"],
        help="relu, or qcfs (quantisation-clip-floor-shift, Bu et al. 2022; converts at fewer steps)",
    )
    t.add_argument("--qcfs-levels", type=_positive_int, help="quantisation levels L of QCFS (default 8)")
    t.add_argument(
        "--width", type=_positive_int, nargs=3, help="channels of ann_cpu_net's three convolutions"
    )
    t.add_argument("--no-bn", action="store_true", help="no BatchNorm (use dropout-free plain convs)")
    t.add_argument("--bias", action="store_true", help="biases on convolutions followed by BN")
    t.add_argument(
        "--train-limit", type=_positive_int, help="class-balanced training subset (data.train_limit)"
    )
    t.add_argument("--test-limit", type=_positive_int, help="class-balanced test subset (data.test_limit)")
    t.add_argument(
        "--time-budget", type=_finite(0), help="stop after the epoch in which this many minutes passed"
    )
    t.add_argument("--seed", type=int, help="random seed (run.seed; default 0)")
    t.add_argument("--device", help=DEVICE_HELP + " (run.device; default auto)")
    t.add_argument("--out", default="runs/ann.safetensors", help="final model to write (safetensors)")
    t.set_defaults(func=_train_ann)

    c = sub.add_parser(
        "convert",
        help="convert an ANN checkpoint to an SNN and report accuracy vs timesteps",
        description="Convert an ANN trained with `rmpsnn train-ann` into an SNN of IF neurons, balance its "
        "thresholds (and calibrate it) on training images, and simulate the test images over "
        "T = 1, 2, 4, ..., eval.timesteps, writing JSON and a figure of accuracy vs T. The configuration "
        "(rmpsnn.app.experiment.ConvertConfig; configs/convert.yaml) comes from --config, then "
        "section.key=value overrides, then the shorthand options below. The defaults give the best "
        "accuracy at few steps (mse thresholds, θ/2 start, bias calibration); RMP-SNN as published is "
        "--balance spike-max --calibrate none.",
    )
    c.add_argument("--config", help="YAML configuration (see configs/convert.yaml)")
    c.add_argument("overrides", nargs="*", metavar="section.key=value", help="configuration overrides")
    c.add_argument(
        "--ann", help="checkpoint written by `rmpsnn train-ann` (ann.checkpoint; runs/ann.safetensors)"
    )
    c.add_argument("--model", help="model name (ann.model; default: the one stored in the checkpoint)")
    c.add_argument(
        "--data",
        help="data spec: shared (../shared/data CIFAR-10; the default), digits, a CIFAR root or an image "
        "folder",
    )
    c.add_argument(
        "--reset", choices=["soft", "hard", "both"], help="soft = RMP neuron; both = compare (the default)"
    )
    c.add_argument(
        "--balance",
        choices=BALANCE_METHODS,
        help="threshold balancing; auto (the default) = mse for ReLU ANNs, qcfs for QCFS ANNs",
    )
    c.add_argument(
        "--calibrate",
        choices=["auto", *CALIBRATION_METHODS],
        help="post-conversion calibration; auto (the default) = bias (layer-wise bias correction) for ReLU "
        "ANNs, none for QCFS ANNs",
    )
    c.add_argument(
        "--calibration-timesteps",
        type=_positive_int,
        help="T that mse thresholds and calibration target (16)",
    )
    c.add_argument("--percentile", type=_finite(0), help="for --balance percentile (99.99)")
    c.add_argument("--scale", type=_finite(0), help="multiply every threshold by this factor (1)")
    c.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one threshold per channel (default: per channel for mse, per layer for the other methods)",
    )
    c.add_argument("--encoding", choices=["direct", "poisson"], help="input encoding (direct)")
    c.add_argument(
        "--signed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="signed IF neurons that take back over-fired spikes (default: on with soft reset and a θ/2 "
        "start, i.e. for the default conversion; off for RMP-SNN as published)",
    )
    c.add_argument(
        "--v-init",
        help="initial potential: auto (the default: half when calibrating or for QCFS, else none), half, "
        "none, or a fraction of θ",
    )
    c.add_argument(
        "--balance-timesteps", type=_positive_int, help="steps simulated for --balance spike-max (64)"
    )
    c.add_argument("--timesteps", type=_positive_int, help="largest T; accuracy at 1, 2, 4, ..., T (128)")
    c.add_argument("--calib", type=_positive_int, help="training images for balancing and calibration (128)")
    c.add_argument(
        "--test-images", type=_positive_int, help="class-balanced test subset (default: the whole test set)"
    )
    c.add_argument("--batch-size", type=_positive_int, help="test images simulated at once (100)")
    c.add_argument("--seed", type=int, help="seed of the calibration subset and Poisson input (0)")
    c.add_argument("--device", help=DEVICE_HELP + " (cpu)")
    c.add_argument("--out", help="result JSON, a .png/.svg figure beside it (runs/conversion.json)")
    c.set_defaults(func=_convert)

    r = sub.add_parser(
        "train",
        help="train a spiking network directly (surrogate gradients, RMP-Loss); torchrun for DDP",
        description="Train with a YAML config (configs/*.yaml) and section.key=value overrides, e.g. "
        "`rmpsnn train --config configs/cpu.yaml optim.epochs=5 rmp.enabled=false`.",
    )
    r.add_argument("--config", help="YAML configuration (see configs/)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    r.add_argument("overrides", nargs="*", metavar="section.key=value", help="configuration overrides")
    r.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="test accuracy and quantization error of a trained spiking model")
    e.add_argument("--checkpoint", required=True, help="a run directory or a .safetensors written by train")
    e.add_argument("--timesteps", type=_positive_int, help="evaluate at this T instead of the trained one")
    e.add_argument(
        "--data",
        dest="data_overrides",
        nargs="*",
        metavar="key=value",
        help="data overrides, e.g. --data root=/data/cifar test_limit=1000",
    )
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.add_argument("--out", help="also write the result as JSON here")
    e.set_defaults(func=_evaluate)

    rp = sub.add_parser(
        "report",
        help="Markdown + HTML report (tables, figures, energy) of training runs and conversion results",
    )
    rp.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directories of `train`, JSON results of `convert`"
    )
    rp.add_argument("--out", default="runs/report", help="output directory")
    rp.add_argument(
        "--images", type=_positive_int, default=1000, help="test images for the monitored evaluation"
    )
    rp.add_argument("--title", help="report title (default: from the runs)")
    rp.add_argument("--device", default="auto", help=DEVICE_HELP)
    rp.set_defaults(func=_report)

    x = sub.add_parser("export", help="export a trained spiking model to NIR or safetensors + JSON")
    x.add_argument("--checkpoint", required=True, help="run directory or .safetensors of `rmpsnn train`")
    x.add_argument(
        "--format",
        choices=["nir", "safetensors"],
        default="nir",
        help="nir (Neuromorphic Intermediate Representation) or safetensors + JSON",
    )
    x.add_argument("--out", default="runs/export", help="a .nir file or a directory")
    x.add_argument(
        "--input-shape", type=_positive_int, nargs=3, metavar=("C", "H", "W"), help="default: from the config"
    )
    x.add_argument(
        "--allow-lossy-reset",
        action="store_true",
        help="export soft-reset neurons to NIR (other tools will simulate reset-to-zero; rmpsnn restores it)",
    )
    x.set_defaults(func=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from .errors import RmpsnnError

    try:
        if getattr(args, "device", None) is not None:  # one check, naming the option the user typed
            from .devices import resolve_device

            args.device = str(resolve_device(args.device, option="--device"))
        return int(args.func(args) or 0)
    except RmpsnnError as e:
        # every input, file or environment error says what was wrong in one line; bugs keep tracebacks
        print(f"rmpsnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
