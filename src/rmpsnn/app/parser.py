"""The command line's top-level parser (argparse only: ``rmpsnn --help`` imports nothing else)."""

from __future__ import annotations

import argparse
import difflib
import re

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """section.key=value overrides may also come between flags (argparse alone takes one run).
    A mistake is one line naming only what was not understood, with the nearest flag when there
    is one, instead of argparse's usage block."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        takes_overrides = hasattr(parsed, "overrides")
        wrong = [a for a in extra if not takes_overrides or a.startswith("-") or "=" not in a]
        if wrong:
            prog = " ".join(filter(None, (self.prog, getattr(parsed, "command", None))))
            self._fail(prog, self._unrecognised(wrong, parsed))
        if extra:
            parsed.overrides = [*parsed.overrides, *extra]
        return parsed

    def _unrecognised(self, wrong: list[str], parsed: argparse.Namespace) -> str:
        flags = self._flags_of(getattr(parsed, "command", None))
        parts = []
        for a in wrong:
            if a.startswith("-"):
                near = difflib.get_close_matches(a.split("=", 1)[0], flags, n=1, cutoff=0.6)
                parts.append(f"{a} (did you mean {near[0]}?)" if near else a)
            elif "." in a and "=" not in a:
                parts.append(f"{a} (an override is section.key=value, without spaces)")
            else:
                parts.append(a)
        return f"unrecognized arguments: {' '.join(parts)}"

    def _flags_of(self, command: str | None) -> list[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                return list(action.choices[command]._option_string_actions)
        return list(self._option_string_actions)

    def error(self, message: str):
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:  # a mistyped command or choice: the nearest one
            near = difflib.get_close_matches(wrong.group(1), re.findall(r"'([^']*)'", wrong.group(2)), n=1)
            message += f"; did you mean {near[0]!r}?" if near else ""
        self._fail(self.prog, message)

    def _fail(self, prog: str, message: str):
        """One line, exit 2: argparse's error without its usage block."""
        self.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")
