"""Accuracy against timesteps of converted SNNs: RMP (soft reset) vs hard reset, and QCFS.

On CIFAR-10 from ../shared/data (the JPEG copy):
  1. train the CPU-sized ANN (``ann_cpu_net``; --width sets its channels) with ReLU, and one with
     QCFS activations, each within --budget-min minutes of 2 CPU cores;
  2. convert the ReLU ANN with soft reset (RMP neuron) and with hard reset, same threshold
     balancing (--balance, spike-max as in RMP-SNN by default), and the QCFS ANN with soft reset
     and v_init = θ/2;
  3. evaluate every SNN at T = 1, 2, 4, ..., --tmax from one simulation each, on --test-images
     class-balanced test images (the ANNs on the same images and on the full test set);
  4. report, per variant, the first T within 1 % (absolute) of its ANN, and the ratio of those T
     for hard vs soft reset (RMP-SNN reports 2-8x).

Prints one JSON line (and progress on stderr); --out also writes it to a file.
    python benchmarks/conversion_curve.py [--budget-min 10] [--test-images 500] [--tmax 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    from rmpsnn.conversion import convert, evaluate_over_time, first_within
    from rmpsnn.data.resolve import load_static
    from rmpsnn.training import evaluate_arrays, normalised, train_ann

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shared")
    ap.add_argument("--width", type=int, nargs=3, default=[32, 64, 128])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--budget-min", type=float, default=10.0, help="training budget per ANN (minutes)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--qcfs-levels", type=int, default=8)
    ap.add_argument("--balance", default="spike-max")
    ap.add_argument("--balance-timesteps", type=int, default=64)
    ap.add_argument("--calib", type=int, default=256, help="training images used for threshold balancing")
    ap.add_argument("--test-images", type=int, default=500)
    ap.add_argument("--tmax", type=int, default=1024)
    ap.add_argument("--train-limit", type=int, default=None, help="train on this many images (quick checks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()

    train = load_static(args.data, "train")
    test = load_static(args.data, "test")
    sub = test.per_class(args.test_images // test.num_classes, seed=args.seed)
    steps = [2**k for k in range(args.tmax.bit_length()) if 2**k <= args.tmax]
    result = {
        "benchmark": "conversion_curve",
        "config": vars(args),
        "timesteps": steps,
        "anns": {},
        "snn": {},
    }

    anns = {}
    for act in ("relu", "qcfs"):
        log(f"training the {act} ANN (budget {args.budget_min} min)")
        model, info = train_ann(
            "ann_cpu_net",
            data=args.data,
            epochs=args.epochs,
            lr=args.lr,
            activation=act,
            qcfs_levels=args.qcfs_levels,
            model_kwargs={"width": tuple(args.width)},
            time_budget_s=args.budget_min * 60,
            seed=args.seed,
            log=log,
            train_limit=args.train_limit,
        )
        mean, std = info["mean"], info["std"]
        acc_sub = evaluate_arrays(model, sub, mean, std)
        anns[act] = (model, mean, std, acc_sub)
        result["anns"][act] = {
            "test_accuracy_full": info["test_accuracy"],
            "test_accuracy_subset": acc_sub,
            "epochs": len(info["history"]),
            "train_seconds": info["seconds"],
        }
        log(f"{act} ANN: full test {info['test_accuracy']:.4f}, subset {acc_sub:.4f}")

    calib_set = train.per_class(args.calib // train.num_classes, seed=args.seed + 1)
    variants = [
        ("soft", "relu", "soft", None),
        ("hard", "relu", "hard", None),
        ("qcfs", "qcfs", "soft", "half"),
    ]
    for name, act, reset, v_init in variants:
        model, mean, std, acc_sub = anns[act]
        calib = torch.cat([x for x, _ in normalised(calib_set, mean, std)])
        balance = "qcfs" if act == "qcfs" else args.balance
        t0 = time.perf_counter()
        snn = convert(
            model,
            calib,
            reset=reset,
            balance=balance,
            balance_timesteps=args.balance_timesteps,
            v_init=v_init if v_init else None,
        )
        t_bal = time.perf_counter() - t0
        r = evaluate_over_time(snn, normalised(sub, mean, std, batch_size=100), timesteps=steps)
        r["ann_accuracy"] = acc_sub
        r["first_T_within_1pct"] = first_within(r, acc_sub, 0.01)
        r["balance"], r["reset"], r["balance_seconds"] = balance, reset, t_bal
        r["thresholds"] = snn.thresholds()
        result["snn"][name] = r
        acc = ", ".join(f"T={t}:{a:.3f}" for t, a in zip(r["timesteps"], r["accuracy"], strict=True))
        log(f"{name}: {acc}; within 1% at T={r['first_T_within_1pct']}")
    ts, th = result["snn"]["soft"]["first_T_within_1pct"], result["snn"]["hard"]["first_T_within_1pct"]
    result["hard_over_soft_T"] = (th / ts) if (ts and th) else None
    result["seconds"] = time.perf_counter() - t_all
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
