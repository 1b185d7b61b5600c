"""Command-line options generated from the typed configurations (:func:`rmpsnn.config.option`):
a key's flags, type, help and default are read from its declaration, never restated.

- A flat options class (``EvaluateOptions``): every field is a flag ``--field-name`` (or a
  positional argument when it has no default and holds a list), and :func:`options_from_args`
  rebuilds the options object, checked, from the parsed arguments.
- A configuration of sections (``TrainConfig``): the fields that declare ``flags`` are shorthand
  flags; every key is reachable as a ``section.key=value`` override, and :func:`keys_epilog`
  lists them all in ``--help``.  :func:`flag_overrides` turns the flags the user gave into
  dotted overrides, read like the overrides (YAML values) and checked by the configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from ..config import allowed, coerce_field, parse_override
from ..errors import ConfigError

__all__ = [
    "add_command",
    "add_config_flags",
    "add_flat_options",
    "add_model_kwarg_flags",
    "config_command",
    "flag_overrides",
    "flat_command",
    "keys_epilog",
    "options_from_args",
    "typed_flags",
    "with_defaults",
]

_DEST = "cfg:"  # dests of generated flags of a sectioned configuration: "cfg:optim.epochs"
_FLAGS = "flags:"  # the namespace entry {key: (dest, flag)} of the generated flags


def _type_of(owner: type, f: dataclasses.Field) -> tuple[type, bool]:
    tp = typing.get_type_hints(owner)[f.name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return (args[0], True) if args and type(None) in typing.get_args(tp) else (tp, False)


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _choices_text(f: dataclasses.Field) -> str:
    if f.metadata.get("choices_help"):
        return ""  # a registry: the help says where to list it (choices are read when checked)
    names = allowed(f)
    return f" {{{', '.join(map(str, names))}}}" if names else ""


def _add(parser, flags, f, owner, *, dest: str, default_text: str | None, required=False) -> None:
    tp, _ = _type_of(owner, f)
    help_text = f.metadata.get("help", "") + _choices_text(f)
    if default_text is not None:
        help_text += f" (default: {default_text})"
    help_text = help_text.replace("%", "%%")  # argparse formats help with %; "95 %" is text
    kw: dict[str, Any] = {"dest": dest, "help": help_text, "default": None}
    if tp is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif tp is list:
        kw["nargs"] = "+"
        kw["metavar"] = f.name.upper()
    else:
        kw["metavar"] = "NAME" if f.metadata.get("choices") else f.name.split("_")[-1].upper()
        where = dest.removeprefix(_DEST) if dest.startswith(_DEST) else "value"
        kw["type"] = _flag_type(owner, f, where)
    if required:
        kw["required"] = True
    parser.add_argument(*flags, **kw)
    # which flag sets which key, so that an error about the key names the flag typed (typed_flags)
    known = dict(parser.get_default(_FLAGS) or {})
    known[dest.removeprefix(_DEST)] = (dest, flags[0])
    parser.set_defaults(**{_FLAGS: known})


def _flag_type(owner: type, f: dataclasses.Field, key: str):
    """argparse ``type=``: the value read as YAML and checked by its field, so that a bad flag
    is refused while parsing (choices from a registry wait for the plugins: the config checks
    them)."""

    def parse(text: str):
        try:
            return coerce_field(key, owner, f, _read(text) if _type_of(owner, f)[0] is not str else text,
                                registry=False)  # fmt: skip
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = key  # argparse names the type in some messages
    return parse


def add_flat_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One argument per field of the flat options class ``cls`` (``--timesteps``, ...)."""
    defaults = {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory() or None
        for f in dataclasses.fields(cls)
    }
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        tp, _ = _type_of(cls, f)
        if required and tp is list:  # e.g. the runs of `report`
            parser.add_argument(f.name, nargs="+", metavar=f.name[:-1].upper(), help=f.metadata["help"])
            continue
        flags = (f"--{f.name.replace('_', '-')}", *f.metadata.get("flags", ()))
        shown = None if required or defaults[f.name] in (None, dataclasses.MISSING) else defaults[f.name]
        if isinstance(shown, list):  # as typed: --timesteps 1 2 4
            text = " ".join(map(str, shown))
        else:
            text = None if shown is None else _default_text(shown)
        _add(parser, flags, f, cls, dest=f.name, default_text=text, required=required)


def typed_flags(args: argparse.Namespace) -> dict[str, str]:
    """``{"run.device": "--device"}``: the keys the user set with a generated flag."""
    known = getattr(args, _FLAGS, None) or {}
    return {key: flag for key, (dest, flag) in known.items() if getattr(args, dest, None) is not None}


def _read(text: Any) -> Any:
    """A flag's value as the overrides read it (YAML: numbers, true/false, null, lists)."""
    if not isinstance(text, str):
        return text
    return parse_override(f"x={text}")[1] if text.strip() else text


def options_from_args(cls: type, args: argparse.Namespace):
    """The options object of ``cls`` from parsed arguments, each value checked by its field
    (errors name the flag)."""
    values = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name, None)
        if raw is None:
            continue
        tp, _ = _type_of(cls, f)
        value = raw if tp in (str, bool) else [_read(v) for v in raw] if isinstance(raw, list) else _read(raw)
        values[f.name] = coerce_field(f"--{f.name.replace('_', '-')}", cls, f, value)
    return cls(**values)


def with_defaults(cls: type, defaults: dict):
    """``cls()`` with ``defaults`` (sections as in a YAML file) set as they are -- the starting
    point shown in ``--help`` (no check: a registry's choices are read only when a command runs)."""
    cfg = cls()
    for section, values in defaults.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


def add_config_flags(parser: argparse.ArgumentParser, cls: type, defaults) -> None:
    """The shorthand flags declared by the keys of the configuration ``cls``; ``defaults`` is
    the configuration the command starts from (its values are shown as the defaults)."""
    for section in dataclasses.fields(cls):
        sec_cls = type(getattr(defaults, section.name))
        for f in dataclasses.fields(sec_cls):
            flags = f.metadata.get("flags", ())
            if flags:
                key = f"{section.name}.{f.name}"
                value = getattr(getattr(defaults, section.name), f.name)
                _add(
                    parser, flags, f, sec_cls, dest=_DEST + key, default_text=f"{key}={_default_text(value)}"
                )


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``{"optim.epochs": 3, ...}`` for the generated flags that were given."""
    out = {}
    for dest, value in vars(args).items():
        if dest.startswith(_DEST) and value is not None:
            out[dest[len(_DEST) :]] = [_read(v) for v in value] if isinstance(value, list) else _read(value)
    return out


def keys_epilog(cls: type, defaults) -> str:
    """Every key of the configuration ``cls`` with its type, default and help, for ``--help``."""
    lines = ["configuration keys (YAML sections, or section.key=value overrides):"]
    for section in dataclasses.fields(cls):
        sec = getattr(defaults, section.name)
        for f in dataclasses.fields(type(sec)):
            tp, optional = _type_of(type(sec), f)
            kind = tp.__name__ + (" | null" if optional else "")
            value = _default_text(getattr(sec, f.name))
            lines.append(
                f"  {section.name}.{f.name} ({kind}, {value}){_choices_text(f)}: {f.metadata.get('help', '')}"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of the epilog (the list of configuration keys)."""


def config_command(
    sub, name: str, cls: type, defaults, func, *, resume: bool, **kw
) -> argparse.ArgumentParser:
    """A command that runs a configuration: --config, section.key=value overrides, the flags the
    keys declare, --data; the epilog lists every key."""
    import textwrap

    kw["description"] = textwrap.fill(kw["description"], 100)
    p = sub.add_parser(name, epilog=keys_epilog(cls, defaults), formatter_class=_Formatter, **kw)
    p.add_argument("--config", help="YAML configuration (see configs/)")
    if resume:
        p.add_argument(
            "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
        )
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="configuration overrides")
    p.add_argument(
        "--data",
        help="data spec: 'shared' (../shared/data CIFAR-10), 'digits', a CIFAR root or an image folder/zip "
        "(sets data.dataset and data.root)",
    )
    add_config_flags(p, cls, defaults)
    p.set_defaults(func=func)
    return p


def flat_command(sub, name: str, cls: type, func, **kw) -> argparse.ArgumentParser:

    p = sub.add_parser(name, description=cls.__doc__, **kw)
    add_flat_options(p, cls)
    p.set_defaults(func=func)
    return p


# train-ann's shorthands for the ANN builders' own arguments (model.kwargs: the builder checks them)
_MODEL_KWARG_FLAGS = (
    ("--activation", "activation", {"choices": ["relu", "qcfs"], "help": "relu, or qcfs "
     "(quantisation-clip-floor-shift, Bu et al. 2022; converts at fewer steps)"}),
    ("--qcfs-levels", "qcfs_levels", {"metavar": "L", "help": "quantisation levels of QCFS"}),
    ("--width", "width", {"nargs": 3, "metavar": "C", "help": "channels of ann_cpu_net's convolutions"}),
    ("--no-bn", "bn", {"action": "store_const", "const": False, "help": "no BatchNorm"}),
    ("--bias", "bias", {"action": "store_const", "const": True, "help": "biases on convolutions before BN"}),
)  # fmt: skip


def add_model_kwarg_flags(parser: argparse.ArgumentParser) -> None:
    for flag, key, kw in _MODEL_KWARG_FLAGS:
        parser.add_argument(flag, dest=f"{_DEST}model.kwargs.{key}", **kw)


LISTS = ("models", "datasets", "neurons", "surrogates", "balancers")


def add_command(sub, name: str, run: Callable[[argparse.Namespace], int], **kw) -> None:
    """The parser of command ``name`` (``run`` runs it), its options generated from its
    configuration or options class."""
    from ..training.config import ANN_DEFAULTS, TrainConfig
    from . import configs as C

    flat = {"demo": C.DemoOptions, "quickstart": C.QuickstartOptions, "evaluate": C.EvaluateOptions,
            "report": C.ReportOptions, "export": C.ExportOptions}  # fmt: skip
    if name in flat:
        flat_command(sub, name, flat[name], run, **kw)
    elif name == "train-ann":
        t = config_command(
            sub, name, TrainConfig, with_defaults(TrainConfig, ANN_DEFAULTS), run, resume=True,
            description="Train an ANN with the trainer of `rmpsnn train`: "
            "rmpsnn.training.config.ANN_DEFAULTS, then --config, then section.key=value overrides, then "
            "the flags (each sets one key). --out is the final model for `rmpsnn convert`.", **kw,
        )  # fmt: skip
        add_model_kwarg_flags(t)
        t.add_argument(
            "--out", default="runs/ann.safetensors", help="final model to write (default: %(default)s)"
        )
    elif name == "convert":
        config_command(
            sub, name, C.ConvertConfig, C.ConvertConfig(), run, resume=False,
            description="Convert an ANN of `rmpsnn train-ann` to an SNN of IF neurons, balance its "
            "thresholds (and calibrate it) on training images, and simulate the test images over "
            "T = 1, 2, 4, ..., eval.timesteps. RMP-SNN as published: --balance spike-max --calibrate none.",
            **kw,
        )  # fmt: skip
    elif name == "train":
        config_command(
            sub, name, TrainConfig, TrainConfig(), run, resume=True, **kw,
            description="Train with a YAML config (configs/*.yaml) and section.key=value overrides, e.g. "
            "`rmpsnn train --config configs/cpu.yaml optim.epochs=5 rmp.enabled=false`.",
        )  # fmt: skip
    else:
        ls = sub.add_parser(name, **kw)
        ls.add_argument("what", choices=LISTS, help="what to list")
        ls.set_defaults(func=run)
