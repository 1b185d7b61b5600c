import pathlib
import re
import subprocess
import sys

import rmpsnn
from rmpsnn.cli import main


def test_version_and_help(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert rmpsnn.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_runs_and_learns(capsys):
    assert main(["demo", "--steps", "30", "--batch", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "soft reset (RMP)" in out and "step  29" in out
    ce = [float(v) for v in re.findall(r"CE (\d+\.\d+)", out)]
    assert len(ce) >= 3 and ce[-1] < ce[0]  # the spiking CNN learns the toy task


def test_console_entry_point_and_module():
    r = subprocess.run(
        [sys.executable, "-m", "rmpsnn", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == f"rmpsnn {rmpsnn.__version__}"


def test_version_matches_pyproject():
    root = pathlib.Path(__file__).resolve().parents[1]
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M).group(1)
    assert version == rmpsnn.__version__
