"""`rmpsnn quickstart` end to end on a tiny image folder (the real run uses ../shared/data)."""

import json

import pytest

from rmpsnn.app.quickstart import CONVERSION_VARIANTS
from rmpsnn.cli import main

from .conftest import write_two_class_folder


@pytest.fixture
def tiny_images(tmp_path):
    return write_two_class_folder(tmp_path / "imgs", size=16, n_train=16, n_test=10)


def test_quickstart_runs_both_routes_and_writes_a_report(tiny_images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMPSNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "qs"
    args = [
        "quickstart",
        "--data",
        str(tiny_images),
        "--epochs",
        "1",
        "--train-images",
        "32",
        "--test-images",
        "12",
        "--hard-reset-images",
        "20",
        "--timesteps",
        "1",
        "2",
        "4",
        "6",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    for part in ("== 1/3", "== 2/3", "== 3/3", "soft reset (RMP)", "hard reset", "with-rmp-loss", "Report:"):
        assert part in text, part
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timesteps"] == [1, 2, 4, 6] and set(summary["conversion"]) == set(CONVERSION_VARIANTS)
    assert set(summary["direct"]) == {"without-rmp-loss", "with-rmp-loss"}
    assert (out / "report" / "report.html").stat().st_size > 10_000  # figures embedded
    md = (out / "report" / "report.md").read_text()
    assert "## ANN-to-SNN conversion" in md and "## Direct training" in md
    # the "within 1 %" row names a T or says "> T" for every variant: no empty cell, no None
    row = next(line for line in md.splitlines() if line.startswith("| within 1 % of the ANN from T on"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert len(cells) == len(CONVERSION_VARIANTS) and all(cells) and "None" not in md
    assert "within 1 % from T on" in text and "None" not in text and "within 1 % at" not in text
    # hard reset is also compared with the ANN on 8 further test images, disjoint from the 12
    assert summary["data"]["hard_reset_test_images"] == 20 and summary["hard_reset_extra"]["test_images"] == 8
    assert "hard reset on 8 further test images" in text
    # every accuracy comes with its sample size and 95 % interval, and the claims are decided
    claims = summary["conversion_claims"]
    assert claims["test_images"] == summary["data"]["conversion_test_images"] == 12
    for v in claims["variants"].values():
        assert all(c["low"] <= c["value"] <= c["high"] and c["n"] == 12 for c in v["accuracy"])
    assert {c["supported"] for c in claims["claims"].values()} <= {True, False}
    assert "n = 12 test images" in text and "95 %" in text and "Claims (stated only when" in text
    # with 12 test images nothing is supported: the output says so instead of claiming
    assert not any(c["supported"] for c in claims["claims"].values())
    assert "not supported" in text or "within noise" in text
    assert summary["direct_claim"]["supported"] is False and "within noise" in text
    # what it ran on
    assert summary["machine"]["torch"] and summary["machine"]["usable_cores"] >= 1 and summary["seed"] == 0
    assert summary["cpu_seconds"] > 0 and summary["stage_starts_s"] and summary["conversion_seconds"] > 0
    assert "## What was run, on what" in md and "training images" in md and "torch" in md
    assert "### conversion" not in md  # sections are titled by what they hold, not by a file name
    _compare_runs(summary, out, capsys)


def _compare_runs(summary, out, capsys):
    """scripts/compare_quickstart.py: a run agrees with itself; a figure moved outside its
    interval or a claim decided the other way is a disagreement."""
    import copy
    import runpy
    import sys

    from rmpsnn.app.claims import compare_summaries

    assert compare_summaries(summary, summary)[0]
    moved = copy.deepcopy(summary)
    cell = moved["conversion_claims"]["variants"][next(iter(CONVERSION_VARIANTS))]["accuracy"][-1]
    cell["value"] = cell["high"] + 0.2 if cell["high"] <= 0.8 else cell["low"] - 0.2
    agree, lines = compare_summaries(summary, moved)
    assert not agree and any("OUTSIDE" in line for line in lines)
    flipped = copy.deepcopy(summary)
    flipped["direct_claim"]["supported"] = not summary["direct_claim"]["supported"]
    assert not compare_summaries(summary, flipped)[0]
    script = str(
        __import__("pathlib").Path(__file__).resolve().parents[1] / "scripts" / "compare_quickstart.py"
    )
    old = sys.argv
    try:
        sys.argv = [script, str(out), str(out / "summary.json")]
        with pytest.raises(SystemExit) as done:
            runpy.run_path(script, run_name="__main__")
        assert done.value.code == 0 and "AGREE" in capsys.readouterr().out
        sys.argv = [script, str(out), str(out / "conversion.json")]  # not a summary: exit 2, one line
        with pytest.raises(SystemExit) as done:
            runpy.run_path(script, run_name="__main__")
        assert done.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    finally:
        sys.argv = old


def test_quickstart_without_data_says_what_to_do(monkeypatch, tmp_path, capsys):
    import rmpsnn.app.quickstart

    monkeypatch.setattr(rmpsnn.app.quickstart, "shared_cifar10_zip", lambda *a, **k: None)
    monkeypatch.setitem(__import__("sys").modules, "sklearn", None)  # as if not installed
    assert main(["quickstart", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "cifar10-jpeg.zip" in err and "scikit-learn" in err and "--data" in err
