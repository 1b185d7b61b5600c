"""The built-in loss terms, one file each; importing this package registers them in
:data:`rmpsnn.training.objective.LOSS_TERMS`.  A new term is a file like these (a factory
``f(cfg, **options) -> LossTerm`` decorated with ``@LOSS_TERMS.register(name)``), imported before
the run starts; its options come from ``loss.kwargs``."""

from . import ce, rmp, tet

__all__ = ["ce", "rmp", "tet"]
