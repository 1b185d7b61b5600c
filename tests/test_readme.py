"""The README's API example runs as written."""

import pathlib
import re


def test_readme_api_example_runs():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert len(namespace["rec"].membranes) == 1
    conv = namespace["net"][0][0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0  # backward reached it
