"""Training: direct SNN training with RMP-Loss (:class:`Trainer`, :func:`train`, behind
``rmpsnn train``), ANN training for conversion (``train_ann``), configuration
(:func:`load_config`), and loading a run (:func:`load_run`); checkpoints of a model are
:mod:`rmpsnn.checkpoint`'s, errors :mod:`rmpsnn.errors`'."""

# Names load on first use (PEP 562): `rmpsnn.training.config` (the typed configuration) is read
# by the command line without torch.
_HOME = {
    "LoadedRun": ".runs",
    "TrainConfig": ".config",
    "Trainer": ".trainer",
    "ann_config": ".ann",
    "evaluate_model": ".evaluate",
    "load_config": ".config",
    "load_run": ".runs",
    "load_state": ".state",
    "save_state": ".state",
    "train": ".trainer",
    "train_ann": ".ann",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        value = getattr(importlib.import_module(_HOME[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
