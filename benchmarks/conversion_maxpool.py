"""Max pooling and automatic calibration on a max-pooled ANN trained briefly on the shared CIFAR-10.

1. trains a small VGG with max pooling (conv-BN-ReLU-MaxPool x3, FC) for --train-seconds of CPU
   time on the shared CIFAR-10 (../shared/data/cifar10-jpeg.zip);
2. converts it with the default conversion twice -- spiking max pooling (``maxpool="spiking"``,
   the default) and the average-pool replacement (``maxpool="avg"``) -- and reports accuracy vs T;
3. for spike-max, act-max, percentile and mse balancing, converts with ``calibrate="auto"`` and
   ``"none"`` and reports both at every T, and ``auto - none`` image by image (paired 95 %
   interval, :func:`rmpsnn.analysis.stats.paired_difference`; ``auto`` must never be worse at the
   longest T).

Prints one JSON line (and writes it to --out).  One run; the figures are noisy on a busy machine.

    python benchmarks/conversion_maxpool.py [--train-seconds 150] [--test-images 200] [--timesteps 256]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from torch import nn


def small_vgg(width=32, classes=10) -> nn.Module:
    layers, c = [], 3
    for w in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        layers += [nn.MaxPool2d(2)]
        c = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.1), nn.Linear(c * 16, classes))


def normalise(images: torch.Tensor) -> torch.Tensor:
    from rmpsnn.data import CIFAR10_MEAN, CIFAR10_STD

    mean = torch.tensor(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).reshape(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def train(net, x, y, seconds, batch=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    net.train()
    t0, steps = time.process_time(), 0
    while time.process_time() - t0 < seconds:
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        xb = x[idx]
        if torch.rand((), generator=gen) < 0.5:
            xb = xb.flip(-1)
        loss = nn.functional.cross_entropy(net(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return net.eval(), steps


@torch.no_grad()
def hits_over_time(snn, x, y, steps, batch=100) -> torch.Tensor:
    """``[len(steps), N]``: which test images the SNN gets right at each T of ``steps`` (one
    simulation of ``max(steps)``; the read-out accumulates)."""
    idx = torch.tensor([t - 1 for t in steps])
    rows = []
    for i in range(0, len(y), batch):
        out = snn(x[i : i + batch], steps[-1])  # [T, B, K]
        rows.append(out[idx].argmax(-1) == y[i : i + batch].unsqueeze(0))
    return torch.cat(rows, 1)


def main(argv=None):
    from rmpsnn.analysis.stats import paired_difference
    from rmpsnn.conversion import convert
    from rmpsnn.data import shared_cifar10

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seconds", type=float, default=150.0, help="CPU seconds of training")
    ap.add_argument("--test-images", type=int, default=200)
    ap.add_argument("--calib-images", type=int, default=128)
    ap.add_argument("--timesteps", type=int, default=256)
    ap.add_argument("--out", default="runs/conversion_maxpool.json")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    tr, te = shared_cifar10("train"), shared_cifar10("test")
    x, y = normalise(torch.from_numpy(tr.images)), torch.from_numpy(tr.labels)
    test = te.balanced(args.test_images, seed=0)
    xt, yt = normalise(torch.from_numpy(test.images)), torch.from_numpy(test.labels)
    net, steps = train(small_vgg(), x, y, args.train_seconds)
    calib = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[: args.calib_images]]
    with torch.no_grad():
        ann_acc = float((net(xt).argmax(-1) == yt).float().mean())
    steps_t = [2**k for k in range(args.timesteps.bit_length()) if 2**k <= args.timesteps]
    out = {
        "benchmark": "conversion_maxpool",
        "train_cpu_seconds": args.train_seconds,
        "train_steps": steps,
        "test_images": len(yt),
        "ann_accuracy": ann_acc,
        "timesteps": steps_t,
        "variants": {},
    }
    variants = {
        "default, spiking max pooling": {},
        "default, max -> average pooling": {"maxpool": "avg"},
        **{
            f"{b}, calibrate={c}": {"balance": b, "calibrate": c}
            for b in ("spike-max", "act-max", "percentile", "mse")
            for c in ("auto", "none")
        },
    }
    done, hits_of = {}, {}
    for label, kwargs in variants.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snn = convert(net, calib, progress=False, **kwargs)
        node = snn.if_nodes[0]
        maxpool = str(kwargs.get("maxpool"))
        resolved = (snn.balance, snn.calibration is not None, node.v_init, snn.signed, maxpool)
        if resolved in done:  # auto resolved to exactly the "none" conversion: the same SNN
            r = dict(done[resolved], same_conversion_as=done[resolved]["label"])
        else:
            hits = hits_over_time(snn, xt, yt, steps_t)
            seconds = time.perf_counter() - t0
            r = {"label": label, "accuracy": hits.float().mean(1).tolist(), "seconds": seconds}
            done[resolved] = r
            hits_of[label] = hits
        r["calibrated"] = snn.calibration is not None
        hits_of.setdefault(label, hits_of[r.get("same_conversion_as", label)])
        out["variants"][label] = r
        curve = " ".join(f"{t}:{a:.3f}" for t, a in zip(steps_t, r["accuracy"], strict=True))
        print(label, curve, flush=True)
    # auto - none, image by image, at every T (the same images: a paired interval)
    out["calibrate_auto_minus_none"] = {}
    for b in ("spike-max", "act-max", "percentile", "mse"):
        if out["variants"][f"{b}, calibrate=none"].get("same_conversion_as") == f"{b}, calibrate=auto":
            out["calibrate_auto_minus_none"][b] = "the same conversion"
            print(f"{b}: calibrate=auto resolves to the same conversion as none", flush=True)
            continue
        auto, none = hits_of[f"{b}, calibrate=auto"], hits_of[f"{b}, calibrate=none"]
        diffs = [paired_difference(a.tolist(), n.tolist()) for a, n in zip(auto, none, strict=True)]
        out["calibrate_auto_minus_none"][b] = [d.to_dict() for d in diffs]
        last = f"{diffs[-1].text()} (paired, n = {len(yt)})"
        print(f"{b}: auto - none at T = {steps_t[-1]}: {last}", flush=True)
    from pathlib import Path

    from rmpsnn.io import atomic_write

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
