"""One family of errors for everything a user can get wrong.

Every error rmpsnn raises on bad input derives from :class:`RmpsnnError`; the message says what
was wrong and how to fix it.  The ``rmpsnn`` command prints any of them as one line and exits 2,
and anything else (a bug) with its traceback.  Each class also derives from the builtin a Python
user would expect (``ValueError`` for a bad argument, ``RuntimeError`` for a bad file), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "InputError",
    "NIRExportError",
    "NonFiniteError",
    "RmpsnnError",
    "RunLockedError",
    "WriteError",
    "one_line",
]


class RmpsnnError(Exception):
    """Base of every error caused by the user's input, files or environment (not by a bug).

    ``key``: the option whose value was wrong (``run.device``), when the message starts with
    ``key=value``; the ``rmpsnn`` command then names the flag the user typed instead
    (``--device='cuda': ...``), so the library checks each value once, wherever it is called from."""

    def __init__(self, *args, key: str | None = None):
        super().__init__(*args)
        self.key = key


class InputError(RmpsnnError, ValueError):
    """An argument has the wrong value, shape or type."""


class ConfigError(InputError):
    """A configuration file or override is invalid (the message names the key and the fix)."""


class DataError(RmpsnnError, RuntimeError):
    """A data set is missing, corrupt or in an unexpected layout; the message says which file."""


class CheckpointError(RmpsnnError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model."""


class ConversionError(InputError):
    """The ANN contains something that cannot be converted; the message names the node."""


class NIRExportError(InputError):
    """The model (or graph) holds something NIR (or rmpsnn's importer) cannot express."""


class NonFiniteError(RmpsnnError, FloatingPointError):
    """Training diverged: a loss, gradient or weight became NaN or infinite."""


class RunLockedError(RmpsnnError, RuntimeError):
    """Another process is writing the same run directory."""


class WriteError(RmpsnnError, OSError):
    """A file could not be written (full disk, read-only folder, no permission); the message
    names the path and the cause.  The previous file at that path is left as it was."""

    def __str__(self) -> str:  # the message alone, even with errno and filename set
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def one_line(error: BaseException, limit: int = 200) -> str:
    """``error``'s message on one line (whitespace runs, newlines included, become one space),
    cut at ``limit`` characters: a library's multi-line message inside one of ours."""
    return " ".join(str(error).split())[:limit]
