"""Shared pieces of the one-GPU reproduction scripts (see docs/results.md, "How to reproduce on
one GPU"): command line, output folder, CIFAR-10 held on the device as uint8 with device-side
crop/flip, a time-budgeted ANN training loop (bf16 autocast and channels_last on CUDA, warm-up
then cosine over the *time* budget so the schedule always finishes), and the papers' figures.

Each script runs start to finish as one command; ``--smoke`` runs the same code on CPU on a few
hundred images in well under a minute (tests/test_reproduce.py), so a GPU lease is never spent
on a crash."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rmpsnn.data import shared_cifar10
from rmpsnn.data import transforms as T
from rmpsnn.data.resolve import channel_stats
from rmpsnn.training.optim import param_groups

# Figures of the papers, as quoted in issue 16 (RMP-SNN: Han et al. CVPR 2020, re-measured at
# T = 32/64 by QCFS, Bu et al. ICLR 2022; RMP-Loss: Guo et al. ICCV 2023).
PAPER = {
    "vgg16": {"ann_accuracy": 0.9363, "rmp_snn_soft": {"32": 0.6030, "64": 0.9035}},
    "resnet20": {"ann_accuracy": 0.9136},
    "resnet19": {"rmp_loss_T4_accuracy": 0.9551},
    "resnet20_rmp_loss_table1": {
        "accuracy": {"without": 0.9126, "with": 0.9189},
        "quantization_error": {"without": 0.186, "with": 0.121},
    },
}


def parse_args(name: str, description: str, budget_min: float, argv=None, extra=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=name, description=description)
    ap.add_argument("--smoke", action="store_true", help="the same code on CPU, a few hundred images")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda if present)")
    ap.add_argument("--out", help="output folder (default: $OUT, else runs/reproduce/NAME)")
    ap.add_argument("--budget-min", type=float, default=budget_min, help="training time budget, minutes")
    ap.add_argument("--seed", type=int, default=0)
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.budget_min = min(args.budget_min, 0.1)
    args.out = Path(args.out or os.environ.get("OUT") or f"runs/reproduce/{name}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.name = name
    return args


class Log:
    """Prints and appends to OUT/log.txt (one of the files that come back from a lease)."""

    def __init__(self, out: Path):
        self.path = out / "log.txt"
        self.t0 = time.perf_counter()

    def __call__(self, line: str) -> None:
        line = f"[{time.perf_counter() - self.t0:7.1f} s] {line}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    env["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return env


def load_cifar(args, log: Log):
    """``(train, test)`` ImageArrays (CPU) and the same as uint8 tensors on the device, with the
    training set's channel statistics.  ``--smoke``: 300 training and 200 test images."""
    train, test = shared_cifar10("train"), shared_cifar10("test")
    if args.smoke:
        train, test = train.balanced(300, seed=args.seed), test.balanced(100, seed=args.seed)
    mean, std = channel_stats(train)
    dev = torch.device(args.device)
    on_dev = {
        "train": tuple(t.to(dev) for t in train.tensors()),
        "test": tuple(t.to(dev) for t in test.tensors()),
    }
    log(f"CIFAR-10: {len(train)} train / {len(test)} test images on {dev}")
    return train, test, on_dev, mean, std


@torch.no_grad()
def accuracy(model, x_u8, y, mean, std, *, batch: int = 1000) -> float:
    model.eval()
    norm = T.Normalize(mean, std)
    correct = 0
    for i in range(0, len(y), batch):
        x = norm(x_u8[i : i + batch].float() / 255)
        with _autocast(x.device):
            correct += int((model(_layout(x)).argmax(1) == y[i : i + batch]).sum())
    return correct / max(1, len(y))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def train_ann(model, data, mean, std, args, log: Log, *, batch: int = 512, lr: float = 0.1, wd: float = 5e-4):
    """SGD (Nesterov 0.9) with warm-up over the first 5 % of the time budget and cosine decay to
    0 at its end, crop + flip on the device, bf16 autocast and channels_last on CUDA.  Stops at
    the budget; returns the per-epoch history."""
    dev = torch.device(args.device)
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    x_all, y_all = data["train"]
    groups = param_groups(model, lr, wd, scale_wide_linear=False)  # no weight decay on BN/biases
    for g in groups:
        g["initial_lr"] = g["lr"]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    aug = T.Compose([T.RandomCrop(x_all.shape[-1], 4), T.RandomHorizontalFlip(), T.Normalize(mean, std)])
    gen = torch.Generator().manual_seed(args.seed)
    budget = args.budget_min * 60
    batch = min(batch, max(16, len(y_all) // 4))
    t0, history, epoch = time.perf_counter(), [], 0
    while True:
        model.train()
        order = torch.randperm(len(y_all), generator=gen).to(dev)
        seen = correct = 0
        loss_sum = 0.0
        for i in range(0, len(order) - batch + 1, batch):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1:
                break
            scale = frac / 0.05 if frac < 0.05 else 0.5 * (1 + math.cos(math.pi * (frac - 0.05) / 0.95))
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * max(scale, 1e-3)
            idx = order[i : i + batch]
            x = aug(x_all[idx].float() / 255, generator=gen)
            with _autocast(dev):
                out = model(_layout(x))
                loss = F.cross_entropy(out.float(), y_all[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == y_all[idx]).sum())
        epoch += 1
        if seen:
            rec = {
                "epoch": epoch,
                "loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            log(f"epoch {epoch}: loss {rec['loss']:.3f}, train {rec['train_accuracy']:.3f}")
        if time.perf_counter() - t0 >= budget or not seen:
            break
    return history


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path
