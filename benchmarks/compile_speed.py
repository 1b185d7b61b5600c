"""A training step of the spiking cpu_net under torch.compile: eager (fused numba kernels),
compiled with the fused kernels kept as custom ops (what rmpsnn does), and compiled with the
neurons forced onto the PyTorch loop (what inductor makes of the recurrence by itself).  Timed in
alternating rounds in one process; ratios to eager.

    python benchmarks/compile_speed.py [--rounds 15] [--batch 32] [--timesteps 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from rmpsnn.models import create
from rmpsnn.neurons import LIF


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timesteps", type=int, default=4)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    base = create("cpu_net", timesteps=args.timesteps, num_classes=10)
    loop = copy.deepcopy(base)
    for m in loop.modules():
        if isinstance(m, LIF):
            m.backend = "torch"
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    arms = {
        "eager": base,
        "compiled_fused_ops": torch.compile(copy.deepcopy(base), fullgraph=True),
        "compiled_loop": torch.compile(loop, fullgraph=True),
    }

    def step(model):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    compile_s = {}
    losses = {}
    for name, model in arms.items():
        t0 = time.perf_counter()
        losses[name] = float(step(model))  # the first call compiles
        compile_s[name] = round(time.perf_counter() - t0, 1)
        for _ in range(2):
            step(model)
    times = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, model in arms.items():
            t0 = time.perf_counter()
            step(model)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "compile_speed",
                "model": "cpu_net",
                "batch": args.batch,
                "timesteps": args.timesteps,
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "median_step_s": {k: round(v, 4) for k, v in med.items()},
                "ratio_to_eager": {k: round(v / med["eager"], 3) for k, v in med.items()},
                "first_call_s": compile_s,
                "first_loss": losses,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
