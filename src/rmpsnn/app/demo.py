"""``rmpsnn demo``: a one-minute tour of the neuron core -- why the RMP neuron (soft reset) tracks
ReLU, a small spiking CNN trained directly with RMP-Loss, and what a spiking layer costs."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from .. import __version__
from ..devices import resolve_device
from ..functional import if_multistep
from ..layers import TdBatchNorm2d, TimeFolded
from ..losses import rmp_loss
from ..neurons import LIF, MembraneRecorder, OutputIntegrator
from .configs import DemoOptions

__all__ = ["run_demo"]


def run_demo(args: DemoOptions) -> int:
    dev = resolve_device(args.device)
    torch.manual_seed(args.seed)
    print(f"rmpsnn {__version__} -- neuron core demo (torch {torch.__version__}, device {dev})\n")

    # 1. Why the RMP neuron: the firing rate of an IF neuron with soft reset tracks ReLU(x).
    print("1. IF neurons driven by a constant current x for T steps (threshold 1):")
    print("   mean |rate*v_th - clip(x, 0, 1)| over x in [-0.5, 1.5]")
    x = torch.linspace(-0.5, 1.5, 2001, device=dev)
    target = x.clamp(0, 1)
    print(f"   {'T':>6} {'soft reset (RMP)':>18} {'hard reset':>12}")
    for T in (8, 32, 128, 512):
        xt = x.expand(T, -1)
        errs = []
        for reset in ("soft", "hard"):
            rate = if_multistep(xt, v_th=1.0, reset=reset).mean(0)
            errs.append((rate - target).abs().mean().item())
        print(f"   {T:>6} {errs[0]:>18.4f} {errs[1]:>12.4f}")
    print("   soft reset keeps the residual above threshold, so no input is lost: error ~ 1/T.\n")

    # 2. A spiking conv net trained directly with surrogate gradients (RMP-Loss defaults).
    T, B = args.timesteps, args.batch
    print(
        "2. Direct training of a small spiking CNN "
        f"(LIF tau=0.25, v_th=0.5, hard reset, InfLoR, tdBN), T={T}:"
    )

    def block(cin, cout):
        return [TimeFolded(nn.Conv2d(cin, cout, 3, padding=1, bias=False)), TdBatchNorm2d(cout), LIF()]

    net = nn.Sequential(
        *block(3, 16),
        TimeFolded(nn.AvgPool2d(2)),
        *block(16, 32),
        TimeFolded(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        TimeFolded(nn.Linear(32, 2)),
        OutputIntegrator("mean"),
    ).to(dev)
    # toy task: is the image's left half brighter than its right half?
    g = torch.Generator().manual_seed(args.seed)
    imgs = torch.rand(B * 4, 3, 16, 16, generator=g)
    imgs[: B * 2, :, :, :8] += 0.5
    imgs[B * 2 :, :, :, 8:] += 0.5
    labels = torch.cat([torch.zeros(B * 2), torch.ones(B * 2)]).long()
    perm = torch.randperm(B * 4, generator=g)
    imgs, labels = imgs[perm].to(dev), labels[perm].to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    t0 = time.perf_counter()
    for step in range(args.steps):
        i = (step % 4) * B
        xb = imgs[i : i + B].unsqueeze(0).expand(T, -1, -1, -1, -1)
        with MembraneRecorder(net) as rec:
            out = net(xb)
        # RMP-Loss (eq. 8-10): pull each pre-spike potential toward the spike it becomes
        rmp = rmp_loss(rec.membranes)
        ce = nn.functional.cross_entropy(out, labels[i : i + B])
        loss = ce + 0.1 * rmp
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps - 1:
            acc = (out.argmax(1) == labels[i : i + B]).float().mean().item()
            rates = [f"{(u >= 0.5).float().mean().item():.2f}" for u in rec.membranes]
            print(
                f"   step {step:>3}  CE {ce.item():.3f}  RMP {rmp.item():.3f}  batch acc {acc:.2f}  "
                f"firing rates {'/'.join(rates)}"
            )
    dt = time.perf_counter() - t0
    print(f"   {args.steps} training steps in {dt:.1f} s\n")
    if args.rounds > 0:
        _demo_cost(args, dev)
    return 0


def _demo_cost(args: DemoOptions, dev) -> None:
    """3. What a spiking layer costs: the same convolutions with ReLU (at batch T*B) vs LIF."""
    T, B = args.timesteps, args.batch
    print(f"3. Cost of the neurons: one SGD step of a 3-conv CIFAR-sized net, T={T}, batch {B}:")

    def net(act):
        torch.manual_seed(0)
        return nn.Sequential(
            TimeFolded(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
            act(),
            TimeFolded(nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)),
            act(),
            TimeFolded(nn.AvgPool2d(2), nn.Conv2d(128, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256)),
            act(),
            TimeFolded(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(256 * 8 * 8, 10)),
        ).to(dev)

    x = torch.randn(T, B, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (B,), device=dev)
    # the floor: the same convolutions over T*B with ReLU, i.e. no neuron dynamics
    nets = {"ReLU (floor)": net(nn.ReLU), "LIF (rmpsnn)": net(LIF)}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in nets.items()}
    times = {k: [] for k in nets}
    for r in range(args.rounds + 1):
        for k, m in nets.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = nn.functional.cross_entropy(m(x).mean(0), y)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:  # round 0 is warm-up
                times[k].append(time.perf_counter() - t0)
    floor = statistics.median(times["ReLU (floor)"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"   {k:<13} {med * 1000:7.0f} ms/step   {med / floor:5.2f}x")
    print("   benchmarks/step_speed.py measures this properly, with memory and other SNN libraries.")
