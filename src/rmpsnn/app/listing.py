"""``rmpsnn list``: the registered models, data sets, neurons, surrogates and balancers, one line
each (name and help), read through each kind's public look-up, so that a user's ``--import``
counts."""

from __future__ import annotations

from typing import Any

__all__ = ["describe"]


def _lines(registry: Any) -> str:
    """A :class:`~rmpsnn.registry.Registry`'s listing, or the names of an older plain registry."""
    if hasattr(registry, "describe"):
        return registry.describe()
    return "\n".join(map(str, registry))


def describe(what: str) -> str:
    """The listing of ``what``: models, datasets, neurons, surrogates or balancers."""
    if what == "models":
        from ..models.registry import MODELS

        width = max(map(len, MODELS.names()), default=0)
        return "\n".join(
            f"{e.name:<{width}}  {e.meta['kind']}  {e.help}".rstrip()
            for e in sorted(MODELS.entries(), key=lambda e: (e.meta["kind"], e.name))
        )
    if what == "datasets":
        from ..data.config import DATASETS, available_datasets

        available_datasets()  # the built-in sets register on first use
        width = max(map(len, DATASETS.names()), default=0)
        return "\n".join(
            f"{e.name:<{width}}  {e.meta['input']:<6}  {e.help}".rstrip() for e in DATASETS.entries()
        )
    if what == "neurons":
        from .. import neurons

        found = getattr(neurons, "NEURONS", None)
        if found is None:
            from ..models import spiking

            found = spiking.NEURONS
        return _lines(found)
    if what == "surrogates":
        from .. import surrogate

        return _lines(getattr(surrogate, "SURROGATES", None) or surrogate.available())
    if what == "balancers":
        from .. import conversion

        return _lines(getattr(conversion, "BALANCERS", None) or conversion.available_balancers())
    raise ValueError(f"unknown listing {what!r}")
