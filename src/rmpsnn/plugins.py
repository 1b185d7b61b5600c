"""User code for the command line: modules or ``.py`` files that register data sets, models,
neurons or balancers, imported before a command reads its configuration.

``rmpsnn train --import my_pkg.plugins --import path/to/plugins.py ...`` imports both, and the
run's configuration stores them (``run.imports``), so that ``evaluate``, ``report``, ``export``,
``convert`` and ``--resume`` import them again from the run itself.  A file is stored with its
absolute path.  Importing the same module or file twice runs it once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError, RmpsnnError

__all__ = ["import_file", "import_plugins", "import_stored", "normalise_imports", "stored_imports"]

_imported: dict[str, str] = {}  # spec (absolute path or module name) -> module name


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def normalise_imports(specs: Iterable[str]) -> list[str]:
    """The specs as a run stores them: files as absolute paths, modules as given, no repeats."""
    out: list[str] = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise InputError(f"an import is a module name or a .py file, got {spec!r}")
        spec = str(Path(spec).resolve()) if _is_file(spec) else spec.strip()
        if spec not in out:
            out.append(spec)
    return out


def import_file(path: str | Path):
    """The module of the Python file ``path``, imported once per process (under a name made from
    its absolute path, so ``--import f.py`` and ``--model f.py:Net`` share it).  Whatever the
    file's own code raises propagates, and the half-imported module is dropped."""
    path = Path(path).resolve()
    name = f"rmpsnn_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path} cannot be imported as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_file(path: Path) -> str:
    if path.is_dir():
        raise InputError("a folder (give the .py file in it, or a module name on the Python path)")
    if not path.is_file():
        raise InputError("no such file (give a module name or a .py file)")
    return import_file(path).__name__


def import_plugins(specs: Iterable[str] | None, *, where: str = "--import") -> list[str]:
    """Import each module name or ``.py`` file of ``specs`` (once per process); returns the
    normalised specs.  A missing module or file, or an error raised by the plugin's code, is
    one :class:`InputError` line naming the plugin (after ``where``: what named it)."""
    specs = normalise_imports(specs or [])
    for spec in specs:
        if spec in _imported:
            continue
        try:
            _imported[spec] = (
                _import_file(Path(spec)) if _is_file(spec) else importlib.import_module(spec).__name__
            )
        except RmpsnnError as e:
            raise type(e)(f"{where} {spec}: {e}") from e
        except ModuleNotFoundError as e:
            if e.name is None or not spec.startswith(e.name):  # the plugin imports what is not here
                raise InputError(f"{where} {spec}: the plugin raised ModuleNotFoundError: {e}") from e
            raise InputError(f"{where} {spec}: {e} (give an importable module or a .py file)") from e
        except Exception as e:  # the plugin's own code failed: say where, in one line
            raise InputError(f"{where} {spec}: the plugin raised {type(e).__name__}: {e}") from e
    return specs


def stored_imports(checkpoint: str | Path) -> list[str]:
    """``run.imports`` of the configuration stored in a checkpoint of ``rmpsnn train`` /
    ``train-ann`` (or a run directory), read from the file's header without loading it; [] when
    there is none or the file is not readable (loading it then reports why)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = next(
            (path / n for n in ("best.safetensors", "last.safetensors") if (path / n).is_file()), path
        )
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                return []
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        imports = json.loads(meta.get("info", "{}")).get("config", {}).get("run", {}).get("imports", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [s for s in imports if isinstance(s, str)] if isinstance(imports, list) else []


def import_stored(source: str | Path, given: Iterable[str] | None = None) -> list[str]:
    """Import the plugins stored with the run or checkpoint ``source`` (its ``run.imports``),
    unless the user named plugins this time (``given``, already imported): those replace the
    stored ones, which is how a moved or renamed plugin file is found again.  Returns what was
    imported."""
    stored = stored_imports(source)
    if given:
        for spec in normalise_imports(stored):  # so that loading the run's config skips them too
            _imported.setdefault(spec, "(replaced by --import)")
        return []
    for spec in stored:
        if _is_file(spec) and not Path(spec).is_file():
            raise InputError(
                f"{source} was made with --import {spec} (stored in its run.imports), and that file is "
                f"gone: put it back, or name its new place with --import NEW_PLACE.py"
            )
    return import_plugins(stored, where=f"{source}: its stored --import")
