"""What the neurons' NaN/inf check costs per training step: the same spiking cpu_net trained with
the input check of ``rmpsnn.functional`` as shipped, and with the finiteness test switched off,
timed in alternating rounds in one process; the ratio is the check's cost.

    python benchmarks/finite_check_cost.py [--rounds 12] [--batch 32] [--timesteps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import rmpsnn.functional.params as params
from rmpsnn.models import create


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timesteps", type=int, default=4)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = create("cpu_net", timesteps=args.timesteps, num_classes=10)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    shipped = params.check_finite

    def no_check(t, fn, what=None, steps=None):  # the input check without its finiteness test
        return None

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = {"with_check": [], "without_check": []}
    for _ in range(args.rounds):
        for key in times:
            params.check_finite = shipped if key == "with_check" else no_check
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)
    params.check_finite = shipped
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "finite_check_cost",
                "model": "cpu_net",
                "batch": args.batch,
                "timesteps": args.timesteps,
                "rounds": args.rounds,
                "ms_per_step": {k: round(v * 1000, 1) for k, v in med.items()},
                "ratio_with_to_without": round(med["with_check"] / med["without_check"], 3),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
