"""RMP-SNN on one GPU: VGG-16 (BN, ReLU, average pooling) trained on CIFAR-10, converted with soft
and hard reset, accuracy vs T = 1 ... 2048 on the 10 000 test images, beside the paper's figures.

    python benchmarks/reproduce/conversion_vgg16.py [--budget-min 4] [--smoke]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _conversion import run


def main(argv=None) -> dict:
    return run("ann_vgg16", "vgg16", __doc__, budget_min=4.0, argv=argv)


if __name__ == "__main__":
    main()
