"""`rmpsnn report` on conversion results: titled sections, what it ran on, "within 1 % from T on",
intervals, and one-line errors for bad input."""

import json
import random

import pytest

from rmpsnn.cli import main


def _result(path, *, per_image=False, n=400):
    steps = [1, 2, 4, 8, 16]
    rng = random.Random(0)
    ann = [rng.random() < 0.5 for _ in range(n)]
    result = {
        "model": "ann_cpu_net",
        "ann_accuracy": sum(ann) / n,
        "test_images": n,
        "timesteps": steps,
        "variants": {},
    }
    # "soft": touches the band at T = 2, leaves it at T = 4, stays from T = 8 on; "hard": never
    flips = {
        "soft reset (RMP), calibrated": [0.3, 0.0, 0.05, 0.0, 0.0],
        "hard reset, calibrated": [0.4, 0.2, 0.1, 0.08, 0.08],
    }
    for label, rates in flips.items():
        rows = [[a and rng.random() >= r for a in ann] for r in rates]
        v = {"accuracy": [sum(r) / n for r in rows]}
        if per_image:
            v["correct"] = ["".join("1" if c else "0" for c in r) for r in rows]
        result["variants"][label] = v
    if per_image:
        result["ann_correct"] = "".join("1" if a else "0" for a in ann)
    path.write_text(json.dumps(result))
    return result


def test_report_names_what_it_ran_on_and_titles_sections(tmp_path, capsys):
    res = _result(tmp_path / "conversion.json")
    assert main(["report", str(tmp_path / "conversion.json"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## What was run, on what" in md and "training images" in md and "test images" in md
    assert "torch" in md and "cores" in md and "seed" in md
    titles = [line for line in md.splitlines() if line.startswith("#")]
    assert not any(
        "conversion.json" in t or t.split(": ")[-1].lstrip("# ") == "conversion" for t in titles
    ), titles
    assert any("Conversion of `ann_cpu_net`" in t for t in titles), titles
    row = next(line for line in md.splitlines() if line.startswith("| within 1 % of the ANN from T on"))
    soft = res["variants"]["soft reset (RMP), calibrated"]["accuracy"]
    ann = res["ann_accuracy"]
    # the band is touched at T = 2 (a flip rate of 0), so "from T on" must be later
    assert soft[1] >= ann - 0.01 and soft[2] < ann - 0.01
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "8" and cells[2] == "> 16", cells
    assert "% [" in md  # accuracies carry their 95 % interval


def test_report_with_per_image_results_states_paired_intervals_and_claims(tmp_path):
    _result(tmp_path / "c.json", per_image=True)
    assert main(["report", str(tmp_path / "c.json"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "SNN − ANN at that T (paired, 95 %)" in md and "Claims, stated only where" in md


@pytest.mark.parametrize("content", ["{not json", "", "\x00\xff", "[1, 2]"])
def test_report_of_a_broken_json_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content.encode("latin-1"))
    assert main(["report", str(bad), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.json" in err and "Traceback" not in err


def test_report_out_naming_a_file_is_one_line(tmp_path, capsys):
    _result(tmp_path / "c.json")
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        assert main(["report", str(tmp_path / "c.json"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is a file" in err and "taken" in err
    assert (tmp_path / "taken").read_text() == "x"


def test_a_pair_with_and_without_rmp_loss_gets_the_quickstarts_verdict():
    """The report left out the direct-training verdict that the quickstart prints."""
    from types import SimpleNamespace as NS

    from rmpsnn.app.report import _rmp_loss_verdict

    def run(rmp, acc):
        cfg = NS(model=NS(name="cpu_net", timesteps=4), data=NS(dataset="cifar10"), rmp=NS(enabled=rmp))
        return {"cfg": cfg, "test_images": 2000, "metrics": [{"test_accuracy": acc}]}

    text = _rmp_loss_verdict({"plain": run(False, 0.387), "rmp": run(True, 0.388)})
    assert "With (rmp) and without (plain)" in text and "within noise" in text and "n = 2000" in text
    assert "improves" in _rmp_loss_verdict({"plain": run(False, 0.30), "rmp": run(True, 0.40)})
    assert _rmp_loss_verdict({"a": run(True, 0.3), "b": run(True, 0.4)}) is None  # not such a pair


def test_a_run_with_no_finished_epoch_is_named_and_a_refusal_writes_nothing(tmp_path, capsys):
    run = tmp_path / "killed"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: cpu_net}\n")
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished epoch" in err[0] and "--resume" in err[0], err
    assert not (tmp_path / "rep").exists()
