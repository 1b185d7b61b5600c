"""Every fenced Python block of README.md and docs/*.md runs as written (each in a fresh namespace,
in a scratch directory), unless its first line is ``# excerpt``; every ``rmpsnn ...`` line of
their shell blocks parses with the real command-line parser."""

import os
import pathlib
import re
import shlex

import pytest

from rmpsnn.cli import build_parser
from rmpsnn.data import shared_cifar10_zip

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for f in FILES:
        text = f.read_text()
        for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M):
            line = text[: m.start()].count("\n") + 1
            out.append((f"{f.relative_to(ROOT)}:{line}", line, m.group(1)))
    return out


PYTHON = [b for b in _blocks("python") if not b[2].startswith("# excerpt")]


@pytest.mark.parametrize(("where", "line", "code"), PYTHON, ids=[b[0] for b in PYTHON])
def test_python_block_runs(where, line, code, tmp_path, monkeypatch):
    if "shared_cifar10" in code or "configs/cpu.yaml" in code or "train_ann(" in code:
        if shared_cifar10_zip() is None:
            pytest.skip("needs ../shared/data/cifar10-jpeg.zip")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # line numbers in tracebacks point into the Markdown file
    exec(compile("\n" * line + code, where.split(":")[0], "exec"), {"__name__": "__docs__"})


def test_every_python_block_is_run_or_marked_as_an_excerpt():
    everything = _blocks("python")
    excerpts = [b[0] for b in everything if b[2].startswith("# excerpt")]
    assert len(PYTHON) + len(excerpts) == len(everything) and len(PYTHON) >= 10, excerpts


def _cli_lines():
    lines = []
    for where, _, code in _blocks("bash") + _blocks(""):
        for raw in code.replace("\\\n", " ").splitlines():
            cmd = raw.split("  #")[0].strip()
            if cmd.startswith("rmpsnn ") and "[" not in cmd and "|" not in cmd and "..." not in cmd:
                lines.append((where, cmd))
    return lines


@pytest.mark.parametrize(("where", "cmd"), _cli_lines(), ids=lambda v: v if " " not in v else None)
def test_documented_command_lines_parse(where, cmd):
    args = build_parser().parse_args(shlex.split(cmd)[1:])
    assert args.command


def test_documented_outputs_stay_out_of_the_repository_root():
    for where, cmd in _cli_lines():
        for opt in ("--out",):
            if f"{opt} " in cmd:
                value = shlex.split(cmd.split(f"{opt} ", 1)[1])[0]
                assert os.sep in value or value.startswith("runs"), (where, cmd)
