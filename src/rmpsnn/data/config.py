"""The ``data:`` section of a configuration and the registry of data sets, free of torch so that
the command line can build its options at once.

Each data set registers beside its implementation (:mod:`.resolve` for the static image sets,
:mod:`.events` for event streams, :mod:`.images` for ImageNet) and declares there what it yields
(``input="images"`` or ``"events"``: event frames are batched time-major) and, optionally, a
dataclass of its own options (``data.options.<key>=...``), so that a data set's options never
become keys of every other data set.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import at_least, check_fields, option
from ..errors import ConfigError
from ..registry import Registry

__all__ = ["DATASETS", "DataConfig", "available_datasets", "dataset_options", "register_dataset"]

INPUT_KINDS = ("images", "events")

DATASETS: Registry[Callable] = Registry("data set", error=ConfigError)

# the modules whose data sets register when they are imported (read on the first look-up, so that
# importing this module stays cheap)
_BUILTIN_MODULES = (".resolve", ".events", ".emulated", ".images")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module, __package__)


def register_dataset(
    name: str,
    fn: Callable | None = None,
    *,
    images: bool = False,
    input: str = "images",
    options: type | None = None,
    help: str | None = None,
    replace: bool = False,
):
    """Register a data set under ``name`` (as a decorator, or with ``fn``).

    With ``images=True`` the function is ``fn(cfg, split, seed) -> ImageArrays`` (``split`` is
    ``"train"`` or ``"test"``) and the registry builds the loaders; otherwise it is
    ``fn(cfg, ctx) -> DataBundle`` and ``input`` says what it yields: ``"images"`` or
    ``"events"`` (frames ``[T, 2, H, W]``, batched time-major).  ``options`` is a dataclass of
    the data set's own keys, read from ``data.options`` (``dataset_options(cfg)``)."""
    if input not in INPUT_KINDS:
        raise ConfigError(f"input={input!r} is not a kind of input; give one of {', '.join(INPUT_KINDS)}")
    if options is not None and not dataclasses.is_dataclass(options):
        raise ConfigError(f"options of data set {name!r} must be a dataclass, got {options!r}")
    kind = "images" if images else input
    return DATASETS.register(name, fn, help=help, replace=replace, arrays=images, input=kind, options=options)


def available_datasets() -> list[str]:
    _load_builtins()
    return sorted(DATASETS.names())


def _known_dataset() -> list[str]:
    return available_datasets()


@dataclass
class DataConfig:
    """The ``data:`` section of a configuration: which data set and how to load it."""

    dataset: str = option(
        "cifar10",
        help="a registered data set (rmpsnn list datasets)",
        choices=_known_dataset,
        choices_help="a registered data set",
    )
    root: str = option("shared", help="where the data set lives ('shared': ../shared/data)")
    augment: str = option(
        "crop_flip", help="training augmentation", choices=("crop_flip", "autoaugment", "none")
    )
    cutout: int = option(0, help="Cutout square size in pixels (0: off)", check=at_least(0))
    train_limit: int | None = option(
        None,
        help="class-balanced training subset (null: the whole split)",
        check=at_least(1),
        flags=("--train-limit",),
    )
    test_limit: int | None = option(
        None,
        help="class-balanced test subset (null: the whole split)",
        check=at_least(1),
        flags=("--test-limit", "--test-images"),
    )
    num_workers: int = option(0, help="loader worker processes", check=at_least(0))
    download: bool = option(False, help="download the data set when it is not there")
    options: dict = option(
        default_factory=dict, help="the data set's own options (its registered options dataclass)"
    )

    @classmethod
    def from_spec(cls, spec: str | None, **kwargs) -> DataConfig:
        """The configuration of a data *spec* as the commands take it: ``shared`` (the CIFAR-10
        JPEGs in ../shared/data), ``digits``, a directory holding ``cifar-10-batches-py/`` or
        ``cifar-100-python/``, or an image folder / zip with ``train/`` and ``test/``."""
        spec = "shared" if spec in (None, "") else str(spec)
        if spec in ("shared", "digits", "synthetic"):
            return cls(dataset="cifar10" if spec == "shared" else spec, root="shared", **kwargs)
        p = Path(spec)
        for dataset, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
            if (p / folder).is_dir() or p.name == folder:
                return cls(dataset=dataset, root=str(p.parent if p.name == folder else p), **kwargs)
        return cls(dataset="images", root=spec, **kwargs)

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first bad key."""
        _load_builtins()
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"data.dataset = {self.dataset!r} is not a registered data set; allowed values: "
                f"{', '.join(available_datasets())}"
            )
        check_fields(self, prefix="data")
        dataset_options(self)

    @property
    def input(self) -> str:
        """What the data set yields, as it declared: ``"images"`` or ``"events"``."""
        _load_builtins()
        return DATASETS.entry(self.dataset).meta["input"]


def dataset_options(cfg: DataConfig) -> Any:
    """The data set's options dataclass filled from ``cfg.options`` (checked), or None for a data
    set that declares none (then ``data.options`` must be empty)."""
    _load_builtins()
    cls = DATASETS.entry(cfg.dataset).meta.get("options")
    if cls is None:
        if cfg.options:
            raise ConfigError(f"data set {cfg.dataset!r} takes no data.options; got {sorted(cfg.options)}")
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(cfg.options) - set(names))
    if unknown:
        raise ConfigError(
            f"data set {cfg.dataset!r} has no option {', '.join(unknown)}; its options: {', '.join(names)}"
        )
    values = cls(**cfg.options)
    check_fields(values, prefix="data.options")
    return values
