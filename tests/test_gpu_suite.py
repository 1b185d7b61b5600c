"""benchmarks/gpu_suite.py --smoke runs the GPU suite's code on CPU in seconds, so a GPU lease is
never spent on a crash."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_suite_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "gpu_suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    result = suite.main(["--smoke", "--out", str(tmp_path)])
    r = result["resnet19"]
    assert {"floor", "rmpsnn", "rmpsnn-torch"} <= set(r["train_step_s"])
    assert all(t > 0 for t in r["train_step_s"].values()) and r["train_ratio_vs_floor"]["floor"] == 1.0
    assert "error" not in result["step_speed"], result["step_speed"]
    assert result["step_speed"]["benchmark"] == "step_speed"
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert saved["environment"]["smoke"] and (tmp_path / "gpu_suite.log").read_text()
