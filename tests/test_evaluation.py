"""The one accuracy loop."""

import torch
from torch import nn

from rmpsnn.evaluation import top1


def test_top1_counts_hits_with_and_without_prepare():
    model = nn.Identity()
    x = torch.eye(4)[[0, 1, 2, 3, 0]]  # argmax = 0, 1, 2, 3, 0
    y = torch.tensor([0, 1, 0, 3, 2])
    r = top1(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert (r["correct"], r["images"]) == (3, 5) and abs(r["accuracy"] - 0.6) < 1e-12
    flipped = top1(model, [(x, y)], prepare=lambda t: t.flip(-1))  # argmax = 3, 2, 1, 0, 3
    assert flipped["correct"] == 0 and flipped["images"] == 5
    assert top1(model, [])["accuracy"] == 0.0
