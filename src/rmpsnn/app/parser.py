"""The command line's top-level parser (argparse only: ``rmpsnn --help`` imports nothing else)."""

from __future__ import annotations

import argparse

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """section.key=value overrides may also come between flags (argparse alone takes one run)."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra and (
            not hasattr(parsed, "overrides") or any(a.startswith("-") or "=" not in a for a in extra)
        ):
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            parsed.overrides = [*parsed.overrides, *extra]
        return parsed
