"""Every fenced Python block of README.md and docs/*.md runs as written (each in a fresh namespace,
in a scratch directory), unless its first line is ``# excerpt``; all of them run again in one
shared directory in forward and then reverse order (so each runs after every other one, and the
last twice in a row), writing only git-ignored paths; every ``rmpsnn ...`` line of their shell
blocks parses with the real command-line parser."""

import os
import pathlib
import re
import shlex
import subprocess

import pytest

from rmpsnn.cli import build_parser
from rmpsnn.data import shared_cifar10_zip

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    """The fenced blocks whose info string is ``lang`` ("" for bare fences): (where, line, code).
    Fences are paired in order, so the closing fence of a ```text block is never taken for the
    opening of a bare one."""
    out = []
    for f in FILES:
        lines = f.read_text().splitlines(keepends=True)
        i = 0
        while i < len(lines):
            fence = re.match(r"^```(\S*)\s*$", lines[i])
            i += 1
            if not fence:
                continue
            start, body = i, []
            while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence
            if fence.group(1) == lang:
                out.append((f"{f.relative_to(ROOT)}:{start}", start, "".join(body)))
    return out


PYTHON = [b for b in _blocks("python") if not b[2].startswith("# excerpt")]


def _needs_cifar(code: str) -> bool:
    return "shared_cifar10" in code or "configs/cpu.yaml" in code or "train_ann(" in code


def _run_block(where: str, line: int, code: str) -> None:
    # line numbers in tracebacks point into the Markdown file
    exec(compile("\n" * line + code, where.split(":")[0], "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize(("where", "line", "code"), PYTHON, ids=[b[0] for b in PYTHON])
def test_python_block_runs(where, line, code, tmp_path, monkeypatch):
    if _needs_cifar(code) and shared_cifar10_zip() is None:
        pytest.skip("needs ../shared/data/cifar10-jpeg.zip")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    _run_block(where, line, code)


def _smaller(code: str) -> str:
    """The block with its data limits cut (the order test checks where blocks write and that they
    can run again, not what they compute; the test above runs them as written)."""
    cap = {"train_limit": 256, "test_limit": 100}  # 256: above the largest batch size of the blocks
    code = re.sub(r"(train_limit|test_limit)=(\d+)", lambda m: f"{m[1]}={min(int(m[2]), cap[m[1]])}", code)
    return re.sub(r"per_class\((\d+)\)", lambda m: f"per_class({min(int(m[1]), 4)})", code)


def _untracked_in_repo() -> set[str]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    )
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("??")}


def test_python_blocks_run_in_both_orders_and_write_only_ignored_paths(tmp_path, monkeypatch):
    blocks = [b for b in PYTHON if not _needs_cifar(b[2]) or shared_cifar10_zip() is not None]
    work = tmp_path / "repo-copy"  # stands for the repository root a reader runs the blocks in
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = _untracked_in_repo()
    from rmpsnn.conversion import BALANCERS
    from rmpsnn.data.config import DATASETS, available_datasets
    from rmpsnn.models.registry import MODELS
    from rmpsnn.neurons import NEURONS

    available_datasets()  # the built-in data sets register on first use: before the snapshot
    registries = (DATASETS, MODELS, NEURONS, BALANCERS)
    built_in = [set(r.names()) for r in registries]
    for where, line, code in [*blocks, *reversed(blocks)]:
        if (where, line) == blocks[-1][:2]:  # each pass as in a new Python process
            for registry, names in zip(registries, built_in, strict=True):
                for name in set(registry.names()) - names:
                    registry.unregister(name)
        _run_block(where, line, _smaller(code))
    written = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() and p.name != "configs")
    written = [w for w in written if not w.startswith("configs" + os.sep)]
    assert written, "the blocks wrote nothing: the test lost its subject"
    # every path a block writes is one the repository's .gitignore covers
    check = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(written),
        capture_output=True,
        text=True,
    )
    ignored = set(check.stdout.split())
    assert not [w for w in written if w not in ignored], "written but not git-ignored"
    assert _untracked_in_repo() == before  # and nothing appeared in the repository itself


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


_RUN_DIRS = r"""
import json, shlex, sys
from rmpsnn.cli import _overrides, build_parser
from rmpsnn.plugins import import_plugins
from rmpsnn.training import load_config
from rmpsnn.training.ann import ann_config

dirs = []
for cmd in json.load(sys.stdin):
    args = build_parser().parse_args(shlex.split(cmd)[1:])
    import_plugins(args.imports)
    cfg = (ann_config if args.command == "train-ann" else load_config)(args.config, _overrides(args))
    dirs.append(str(cfg.run_dir()))
print(json.dumps(dirs))
"""


def _after(tokens: list[str], flag: str) -> list[str]:
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == flag]


def test_every_documented_run_that_a_command_reads_is_made_by_another(tmp_path):
    """An outside audit ran the shell lines as written: `report runs/plain runs/rmp`, `export
    --checkpoint runs/rmp` and others read runs that no documented command makes.  Every ``runs/``
    path read (``--checkpoint``, ``--resume``, ``--ann``, the runs given to ``report``) must be
    written by a documented line (its run directory, ``run.out=`` or ``--out``) or block."""
    lines = [cmd for _, cmd in _cli_lines()]
    made = {m for _, _, code in _blocks("python") for m in re.findall(r"runs/[\w./-]+", code)}
    trains = []
    for cmd in lines:
        tokens = shlex.split(cmd)
        made |= {t.split("=", 1)[1] for t in tokens if t.startswith("run.out=")}
        made |= set(_after(tokens, "--out"))
        if tokens[1] in ("train", "train-ann") and "--resume" not in tokens:
            trains.append(cmd)
    # the plugins the docs use: the registering blocks of docs/extending.md, saved as the docs say
    blocks = [code for where, _, code in _blocks("python") if "extending.md" in where and "register" in code]
    (tmp_path / "my_plugins.py").write_text("\n\n".join(b for b in blocks if "import pytest" not in b))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    import json

    res = subprocess.run(
        [os.sys.executable, "-c", _RUN_DIRS], input=json.dumps(trains), text=True, capture_output=True,
        cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    made |= set(json.loads(res.stdout))
    read = []
    for cmd in lines:
        tokens = shlex.split(cmd)
        read += [(cmd, p) for flag in ("--checkpoint", "--resume", "--ann") for p in _after(tokens, flag)]
        if tokens[1] == "report":
            read += [
                (cmd, p) for p in tokens[2:] if not p.startswith("-") and p not in _after(tokens, "--out")
            ]
    missing = [
        (cmd, p)
        for cmd, p in read
        if p.startswith("runs/") and not any(p == m or p.startswith(m.rstrip("/") + "/") for m in made)
    ]
    assert not missing, missing
