"""RMP-Loss ablation (the shape of RMP-Loss Table 1): the same spiking CNN, seed, data and epochs,
trained with and without RMP-Loss; test accuracy and quantisation error (mean |Dis|) of each arm.

CIFAR-10 from ../shared/data.  The two arms run as two processes side by side (one thread
each), so they share the machine equally.  Prints one JSON line; --out also writes it.

    python benchmarks/rmp_loss_ablation.py [--epochs 3] [--train-limit 9000] [--width 32 64 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_arm(args) -> dict:
    import torch

    from rmpsnn.training import train_snn

    torch.set_num_threads(1)
    _, info = train_snn(
        "cpu_net",
        data=args.data,
        timesteps=args.timesteps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        rmp=args.arm == "rmp",
        k=args.k,
        model_kwargs={"width": tuple(args.width)},
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        seed=args.seed,
        log=lambda s: print(f"[{args.arm}] {s}", file=sys.stderr, flush=True),
    )
    f = info["final"]
    return {
        "arm": args.arm,
        "test_accuracy": f["accuracy"],
        "quantization_error": f["quantization_error"],
        "quantization_mse": f["quantization_mse"],
        "per_layer": f["per_layer"],
        "history": info["history"],
        "seconds": info["seconds"],
        "train_images": info["train_images"],
        "test_images": info["test_images"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shared")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=9000)
    ap.add_argument("--test-limit", type=int, default=2000, help="class-balanced test subset (0: all)")
    ap.add_argument("--width", type=int, nargs=3, default=[32, 64, 128])
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--k", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arm", choices=["rmp", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args)))
        return
    t0 = time.perf_counter()
    base = [sys.executable, os.path.abspath(__file__)] + [a for a in (argv or sys.argv[1:]) if a != "--out"]
    if args.out and args.out in base:
        base.remove(args.out)
    procs = {
        arm: subprocess.Popen([*base, "--arm", arm], stdout=subprocess.PIPE, text=True)
        for arm in ("plain", "rmp")
    }
    arms = {arm: json.loads(p.communicate()[0].strip().splitlines()[-1]) for arm, p in procs.items()}
    result = {
        "benchmark": "rmp_loss_ablation",
        "config": {k: v for k, v in vars(args).items() if k != "arm"},
        "arms": arms,
        "seconds": time.perf_counter() - t0,
        "accuracy_gain": arms["rmp"]["test_accuracy"] - arms["plain"]["test_accuracy"],
        "quantization_error_ratio": arms["rmp"]["quantization_error"] / arms["plain"]["quantization_error"],
    }
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
