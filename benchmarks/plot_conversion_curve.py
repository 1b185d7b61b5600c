"""Render benchmarks/conversion_curve.py's JSON as the accuracy-vs-timesteps figure.

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
    "default-per-channel": "soft reset, calibrated, per-channel θ",
    "qcfs": "QCFS",
    "qcfs-calibrated": "QCFS, calibrated",
}


def main(argv=None):
    src, dest = (argv or sys.argv[1:])[:2]
    r = json.load(open(src))
    curves = {NAMES.get(k, k): (v["timesteps"], v["accuracy"]) for k, v in r["snn"].items()}
    ann = {NAMES.get(k, k): v["ann_accuracy"] for k, v in r["snn"].items()}
    for f in plot_accuracy_vs_timesteps(
        curves, dest, ann_accuracy=ann, title="CIFAR-10, small CNN, 2 CPU cores: converted SNNs"
    ):
        print(f)


if __name__ == "__main__":
    main()
