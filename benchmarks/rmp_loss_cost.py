"""What RMP-Loss costs per training step: the same spiking CNN trained without it, with rmpsnn's
fused ``rmp_loss``, and with the plain autograd expression of eq. 8-10 (what a user would write
on any SNN library), timed in alternating rounds in one process; ratios to the plain step.

    python benchmarks/rmp_loss_cost.py [--rounds 7] [--width 32 64 128] [--batch 64] [--timesteps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def unfused_rmp_loss(membranes, v_th=0.5, p=2):
    """eq. 8-10 written with autograd ops (the reference the fused loss is tested against)."""
    qs = [torch.where(u >= v_th, 1 - u, -u).abs().pow(p) for u in membranes]
    return sum(q.sum() for q in qs) / sum(q.numel() for q in qs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--width", type=int, nargs=3, default=[32, 64, 128])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from rmpsnn.losses import rmp_loss
    from rmpsnn.models import create
    from rmpsnn.neurons import MembraneRecorder

    torch.manual_seed(0)
    model = create("cpu_net", width=tuple(args.width), timesteps=args.timesteps)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    def step(variant: str) -> float:
        t0 = time.perf_counter()
        if variant == "plain":
            loss = F.cross_entropy(model(x), y)
        else:
            with MembraneRecorder(model) as rec:
                out = model(x)
            reg = rmp_loss(rec.membranes) if variant == "rmp-fused" else unfused_rmp_loss(rec.membranes)
            loss = F.cross_entropy(out, y) + 0.1 * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    variants = ["plain", "rmp-fused", "rmp-unfused"]
    times = {v: [] for v in variants}
    for r in range(args.rounds + 1):
        for v in variants:
            t = step(v)
            if r > 0:  # round 0 warms up
                times[v].append(t)
    med = {v: statistics.median(t) for v, t in times.items()}
    result = {
        "benchmark": "rmp_loss_cost",
        "config": {**vars(args), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "step_s": med,
        "ratio_vs_plain": {v: med[v] / med["plain"] for v in variants},
    }
    for v in variants:
        print(f"{v:<12} {med[v]:.3f} s/step  {med[v] / med['plain']:.2f}x plain", flush=True)
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
