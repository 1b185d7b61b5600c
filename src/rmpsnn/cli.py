"""The ``rmpsnn`` command.

rmpsnn quickstart [--data auto] [--epochs 2]   # both routes on offline data, with a report
rmpsnn demo [--timesteps 4] [--device cpu]     # a short tour of the neuron core
rmpsnn train-ann --model ann_cpu_net --epochs 10 --out runs/ann.safetensors
rmpsnn convert --ann runs/ann.safetensors --reset both --timesteps 1024 --out runs/conversion.json
rmpsnn train --config configs/cpu.yaml [section.key=value ...]     # direct training, RMP-Loss
rmpsnn train --resume RUN_DIR                                      # continue a stopped run
rmpsnn evaluate --checkpoint RUN_DIR|FILE.safetensors [--timesteps T]
rmpsnn report RUN_DIR [RUN_DIR|conversion.json ...] --out runs/report
rmpsnn export --checkpoint RUN_DIR --format nir|safetensors [--target snntorch] --out runs/export
rmpsnn list models|datasets|neurons|surrogates|balancers
torchrun --nproc_per_node=N -m rmpsnn train --config ...           # distributed data parallel

Every option is declared once, as a typed configuration key (rmpsnn.config.option); the flags
below are generated from those declarations (rmpsnn.app.arguments).  Every command takes
``--import MODULE_OR_FILE.py`` (user data sets, models, neurons, balancers).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import InputError


def _overrides(args: argparse.Namespace) -> dict:
    """``key=value`` overrides, then ``--data`` (a spec: data.dataset and data.root), then the
    generated flags the user gave; ``--import`` goes to ``run.imports``."""
    from .app.arguments import flag_overrides
    from .config import parse_override
    from .data.config import DataConfig

    overrides = dict(map(parse_override, args.overrides))
    if getattr(args, "data", None) is not None:
        spec = DataConfig.from_spec(args.data)
        overrides.update({"data.dataset": spec.dataset, "data.root": spec.root})
    overrides.update(flag_overrides(args))
    if args.imports:
        overrides["run.imports"] = args.imports
    return overrides


def _resume_overrides(args: argparse.Namespace) -> list[str]:
    if args.config is not None:
        raise InputError("give either --config or --resume, not both (a resumed run keeps its config)")
    from .plugins import import_stored

    import_stored(args.resume, args.imports)  # its plugins, or the ones the user names instead
    return [f"{k}={json.dumps(v)}" for k, v in _overrides(args).items() if k != "run.imports"]


def _train(args: argparse.Namespace) -> int:
    from .training import train

    if args.resume is not None:
        return 0 if train(None, _resume_overrides(args), resume=args.resume) else 1
    overrides = _overrides(args)
    if args.config is None and not overrides:
        raise InputError(
            "give --config CONFIG.yaml (see configs/), overrides of the defaults, or --resume RUN_DIR"
        )
    return 0 if train(args.config, overrides) else 1


def _train_ann(args: argparse.Namespace) -> int:
    from .training.ann import ann_config, fit_ann, save_ann
    from .training.rundir import resume_config

    if args.resume is not None:
        run_dir = Path(args.resume)
        cfg = resume_config(run_dir, _resume_overrides(args))
    else:
        cfg = ann_config(args.config, _overrides(args))
        run_dir = cfg.run_dir()
    model, info = fit_ann(cfg, run_dir, resume=args.resume is not None)
    save_ann(args.out, model, cfg, info)
    print(f"test accuracy {info['test_accuracy']:.4f}; checkpoint {args.out}; run directory {run_dir}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .app import configs, experiment

    cfg = configs.load_convert_config(args.config, _overrides(args))
    line = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    res = experiment.run_conversion(cfg, progress=None if sys.stderr.isatty() else line)  # a bar, or lines
    print(f"wrote {', '.join(res['files'])}")
    return 0


def _options(cls: type, args: argparse.Namespace):
    from .app.arguments import options_from_args

    return options_from_args(cls, args)


def _on_checkpoint(options: str, action: str) -> Callable[[argparse.Namespace], int]:
    """``evaluate`` and ``export``: the plugins stored with the checkpoint's run are imported
    first, then ``rmpsnn.app.checkpoints.<action>(options)`` runs."""

    def run(args: argparse.Namespace) -> int:
        from .app import checkpoints, configs
        from .plugins import import_stored

        opts = _options(getattr(configs, options), args)
        import_stored(opts.checkpoint, args.imports)
        getattr(checkpoints, action)(opts)
        return 0

    return run


_evaluate = _on_checkpoint("EvaluateOptions", "evaluate_checkpoint")
_export = _on_checkpoint("ExportOptions", "export_checkpoint")


def _report(args: argparse.Namespace) -> int:
    from .app.configs import ReportOptions
    from .app.report import write_report
    from .plugins import import_stored

    opts = _options(ReportOptions, args)
    for run in opts.runs:
        import_stored(run, args.imports)
    paths = write_report(opts.runs, opts.out, images=opts.images, device=opts.device, title=opts.title)
    print(f"wrote {paths['markdown']} and {paths['html']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .app.configs import DemoOptions
    from .app.demo import run_demo

    return run_demo(_options(DemoOptions, args))


def _quickstart(args: argparse.Namespace) -> int:
    from .app.configs import QuickstartOptions
    from .app.quickstart import run_quickstart

    return run_quickstart(_options(QuickstartOptions, args))


def _list(args: argparse.Namespace) -> int:
    from .app.listing import describe

    print(describe(args.what))
    return 0


# the commands and their one-line help; a command's options are built only when it is run
# (or for its --help), so that `rmpsnn --help` imports no configuration
SUMMARIES = {
    "demo": "a short tour of the spiking-neuron core (about a minute on a CPU)",
    "quickstart": "both routes on offline data in minutes (conversion soft vs hard reset, RMP-Loss on/off)",
    "train-ann": "train a conversion-friendly ANN (ReLU or QCFS) and save it",
    "convert": "convert an ANN checkpoint to an SNN and report accuracy vs timesteps",
    "train": "train a spiking network directly (surrogate gradients, RMP-Loss); torchrun for DDP",
    "evaluate": "test accuracy and quantization error of a trained spiking model",
    "report": "Markdown + HTML report of training runs and conversion results",
    "export": "export a trained spiking model to NIR or safetensors + JSON",
    "list": "the registered models, data sets, neurons, surrogates, balancers",
}

RUN = {
    "demo": _demo, "quickstart": _quickstart, "train-ann": _train_ann, "convert": _convert, "train": _train,
    "evaluate": _evaluate, "report": _report, "export": _export, "list": _list,
}  # fmt: skip


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``command`` of that one (the others listed only)."""
    from .app.parser import Parser

    p = Parser(
        prog="rmpsnn",
        description="Spiking neural networks accurate at few timesteps: RMP (soft-reset) ANN-to-SNN "
        "conversion and RMP-Loss direct training.",
    )
    p.add_argument("--version", action="version", version=f"rmpsnn {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--import", dest="imports", action="append", metavar="MODULE_OR_FILE.py",
        help="import user code first (it may register data sets, models, neurons, balancers); repeatable",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in SUMMARIES.items():
        if command is None or name == command:
            from .app.arguments import add_command

            add_command(sub, name, RUN[name], help=summary, parents=[common])
        else:
            sub.add_parser(name, help=summary)
    return p


def _as_typed(error: Exception, args: argparse.Namespace) -> str:
    """The error's message, naming the flag the user typed (``--device``) rather than the key it
    sets (``run.device``)."""
    from .app.arguments import typed_flags

    text, key = str(error), getattr(error, "key", None)
    flag = typed_flags(args).get(key) if key else None
    return flag + text[len(key) :] if flag and text.startswith(f"{key}=") else text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from .devices import tune_cpu_allocator
    from .errors import RmpsnnError

    tune_cpu_allocator()  # the command owns its process: reuse freed tensor memory (see there)
    try:
        if args.imports:
            from .plugins import import_plugins

            args.imports = import_plugins(args.imports)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C is the user's choice, not a crash: one line, and how to go on
        train = args.command.startswith("train")
        again = f"; go on with rmpsnn {args.command} --resume RUN_DIR" if train else ""
        print(f"\nrmpsnn {args.command}: interrupted{again}", file=sys.stderr)
        return 130
    except RmpsnnError as e:
        # every input, file or environment error says what was wrong in one line; bugs keep tracebacks
        print(f"rmpsnn {args.command}: error: {_as_typed(e, args)}", file=sys.stderr)
        return 2
    except OSError as e:
        # a write outside rmpsnn.io (a log line, a figure, a folder) on a full disk or read-only folder
        from .io import ENVIRONMENT_ERRNOS, write_error

        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"rmpsnn {args.command}: error: {write_error(e.filename or '?', e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
