"""Render benchmarks/conversion_curve.py's JSON as the accuracy-vs-timesteps figure, and print it
as a Markdown table (accuracy in %, bold: the first T within 1 % of the variant's ANN).

python benchmarks/plot_conversion_curve.py benchmarks/results/conversion_curve.json docs/img/conversion_curve
"""

from __future__ import annotations

import json
import sys

from rmpsnn.analysis import plot_accuracy_vs_timesteps

NAMES = {
    "soft": "soft reset (RMP-SNN: spike-max)",
    "hard": "hard reset (spike-max)",
    "default": "soft reset, calibrated (default)",
    "default-hard": "hard reset, calibrated",
    "default-per-layer": "soft reset, calibrated, per-layer θ",
    "default-per-channel": "soft reset, calibrated, per-channel θ",
    "qcfs": "QCFS",
    "qcfs-calibrated": "QCFS, calibrated",
}


def markdown_table(r: dict) -> str:
    steps = r["timesteps"]
    lines = [
        "| variant | ANN | " + " | ".join(map(str, steps)) + " | within 1 % at T |",
        "|---|---|" + "---|" * len(steps) + "---|",
    ]
    for k, v in r["snn"].items():
        acc = dict(zip(v["timesteps"], v["accuracy"], strict=True))
        first = v["first_T_within_1pct"]
        cells = []
        for t in steps:
            a = acc.get(t)
            cells.append("" if a is None else (f"**{100 * a:.1f}**" if t == first else f"{100 * a:.1f}"))
        within = first if first else f"> {v['timesteps'][-1]}"
        ann = f"{100 * v['ann_accuracy']:.1f}"
        lines.append(f"| {NAMES.get(k, k)} | {ann} | " + " | ".join(cells) + f" | {within} |")
    return "\n".join(lines)


def main(argv=None):
    src, dest = (argv or sys.argv[1:])[:2]
    r = json.load(open(src))
    print(markdown_table(r))
    curves = {NAMES.get(k, k): (v["timesteps"], v["accuracy"]) for k, v in r["snn"].items()}
    ann = {NAMES.get(k, k): v["ann_accuracy"] for k, v in r["snn"].items()}
    for f in plot_accuracy_vs_timesteps(
        curves, dest, ann_accuracy=ann, title="CIFAR-10, small CNN, 2 CPU cores: converted SNNs"
    ):
        print(f)


if __name__ == "__main__":
    main()
