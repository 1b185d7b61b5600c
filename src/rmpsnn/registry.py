"""One registry type for everything pluggable: models, data sets, neurons, surrogates, balancers,
calibration methods, loss terms.

Each kind of thing has one :class:`Registry`; each implementation registers itself beside its
code (``@NEURONS.register("plif")``), as timm's models do.  Every registry follows the same
rules:

- **duplicates** raise an :class:`~rmpsnn.errors.InputError` naming the kind and the name, unless
  ``replace=True`` is passed; re-registering the *same* object (a module imported twice) is
  allowed and changes nothing;
- **unknown names** raise the registry's error class (an ``InputError`` subclass) listing the valid
  names, with a "did you mean" suggestion for a near miss;
- names are looked up case-insensitively, and aliases resolve to their target;
- each entry carries a one-line help text (the first line of the object's docstring unless one
  is given) and free-form metadata (``NEURONS.entry("plif").meta``), which the command line uses
  for ``rmpsnn list`` and for the choices of its options.

This module imports nothing heavy (no torch), so the command line can list choices at once.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .errors import InputError

__all__ = ["Entry", "Registry"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name, the object, a one-line help text and free metadata."""

    name: str
    obj: T
    help: str = ""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    for line in doc.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _same_definition(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same object or the same definition imported twice."""
    if a is b:
        return True
    key = lambda o: (getattr(o, "__module__", None), getattr(o, "__qualname__", None))  # noqa: E731
    return key(a)[1] is not None and key(a) == key(b)


class Registry(Generic[T]):
    """Named implementations of one kind (``kind`` names it in messages: "neuron", "data set").

    ``error`` is the exception class raised for an unknown name (an :class:`InputError` subclass,
    e.g. :class:`~rmpsnn.errors.ConfigError`).
    """

    def __init__(self, kind: str, *, error: type[InputError] = InputError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    # ------------------------------------------------------------------------------ registration
    def register(
        self,
        name: str,
        obj: T | None = None,
        *,
        help: str | None = None,
        aliases: tuple[str, ...] = (),
        replace: bool = False,
        **meta: Any,
    ) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        ``aliases`` are other names for the same entry; ``meta`` is stored with it.
        """
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"a {self.kind} needs a non-empty name, got {name!r}")

        def add(target: T) -> T:
            key = name.lower()
            old = self._entries.get(key)
            if old is not None and not replace and not _same_definition(old.obj, target):
                raise InputError(
                    f"{self.kind} {name!r} is already registered (by {_describe(old.obj)}); "
                    f"choose another name or pass replace=True"
                )
            if key in self._aliases and not replace:
                raise InputError(f"{name!r} is already an alias of {self.kind} {self._aliases[key]!r}")
            self._entries[key] = Entry(name, target, help if help is not None else _first_line(target), meta)
            for alias in aliases:
                self._aliases[alias.lower()] = key
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (and its aliases); for tests and for replacing a plugin."""
        key = self._key(name)
        del self._entries[key]
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    # ----------------------------------------------------------------------------------- look-up
    def _key(self, name: str) -> str:
        if not isinstance(name, str):
            raise self.error(f"a {self.kind} is chosen by name, got {type(name).__name__} {name!r}")
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise self.error(self.unknown_message(name))
        return key

    def unknown_message(self, name: str) -> str:
        """ "unknown neuron 'plf'; did you mean 'plif'? Valid names: ..." (also for callers' errors)."""
        valid = self.names()
        close = difflib.get_close_matches(str(name).lower(), [*valid, *self._aliases], n=1, cutoff=0.6)
        listing = ", ".join(valid) or "(none registered)"
        if close:
            suggestion = self._aliases.get(close[0], close[0])
            return f"unknown {self.kind} {name!r}; did you mean {suggestion!r}? Valid names: {listing}"
        return f"unknown {self.kind} {name!r}; valid names: {listing}"

    def entry(self, name: str) -> Entry[T]:
        """The :class:`Entry` registered under ``name`` (or an alias)."""
        return self._entries[self._key(name)]

    def get(self, name: str) -> T:
        """The object registered under ``name``; an unknown name raises ``self.error``."""
        return self.entry(name).obj

    def resolve(self, spec: str | T) -> T:
        """A registered name gives its object; anything else (a class, a callable) passes through."""
        return self.get(spec) if isinstance(spec, str) else spec

    def names(self) -> list[str]:
        """The registered names, in registration order (aliases not included)."""
        return [e.name for e in self._entries.values()]

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return self._aliases.get(key, key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> str:
        """One line per entry, ``name  help``, for ``rmpsnn list``."""
        width = max((len(n) for n in self.names()), default=0)
        return "\n".join(f"{e.name:<{width}}  {e.help}".rstrip() for e in self._entries.values())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _describe(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{module}.{qual}" if module else qual
