"""Accuracy against timesteps of converted SNNs: RMP (soft reset) vs hard reset, calibration, QCFS.

On CIFAR-10 from ../shared/data (the JPEG copy):
  1. train the CPU-sized ANN (``ann_cpu_net``; --width sets its channels) with ReLU, and one with
     QCFS activations, each within --budget-min minutes of 2 CPU cores;
  2. convert the ReLU ANN
     - as RMP-SNN: soft reset (RMP neuron) and hard reset, same threshold balancing (--balance,
       spike-max by default), membranes from 0, no calibration ("soft", "hard");
     - with rmpsnn's defaults, ``convert(ann, calib)``: per-channel MSE thresholds, θ/2 initial
       potential, layer-wise bias correction, signed neurons with soft reset ("default"), the same
       with plain IF neurons ("default-plain"), hard reset ("default-hard"), and soft reset with
       per-layer thresholds ("default-per-layer");
     and the QCFS ANN with its trained thresholds and v_init = θ/2, signed ("qcfs") or plain
     ("qcfs-plain") neurons, and with bias correction ("qcfs-calibrated");
  3. evaluate every SNN at T = 1, 2, 4, ..., --tmax (--tmax-calibrated for the calibrated and QCFS
     variants, which get there early) from one simulation each, on --test-images class-balanced
     test images (the ANNs on the same images and on the full test set);
  4. report, per variant, the first T from which it stays within 1 % (absolute) of its ANN at
     every longer simulated T (``first_within``) and the accuracy gap at every T, and the ratio
     of that T for hard vs soft reset under spike-max
     (RMP-SNN reports 2-8x).

--ann-dir DIR keeps the trained ANNs (relu.safetensors, qcfs.safetensors) and reuses them when
they are there, so the conversion part can be re-run on the same networks.

Prints one JSON line (and progress on stderr); --out also writes it to a file.
    python benchmarks/conversion_curve.py [--budget-min 10] [--test-images 500] [--tmax 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    from rmpsnn.checkpoint import load_model
    from rmpsnn.conversion import convert, evaluate_over_time, first_within
    from rmpsnn.data.resolve import load_static
    from rmpsnn.evaluation import evaluate_arrays, normalised
    from rmpsnn.training import train_ann

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
    ap.add_argument("--calibration-timesteps", type=int, default=None, help="default: convert()'s")
    ap.add_argument("--test-images", type=int, default=500)
    ap.add_argument("--tmax", type=int, default=1024)
    ap.add_argument("--tmax-calibrated", type=int, default=128, help="largest T of calibrated/QCFS variants")
    ap.add_argument("--ann-dir", help="save the trained ANNs here, or load them if present")
    ap.add_argument("--variants", nargs="+", help="only these variants (default: all)")
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
        saved = Path(args.ann_dir) / f"{act}.safetensors" if args.ann_dir else None
        if saved is not None and saved.is_file():
            log(f"loading the {act} ANN from {saved}")
            model, info = load_model(saved)  # info holds the training history and time
        else:
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
                out=str(saved) if saved is not None else None,
            )
        model.eval()
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
    cal_t = {}
    if args.calibration_timesteps is not None:
        cal_t["calibration_timesteps"] = args.calibration_timesteps
    rmp_snn = {"balance": args.balance, "calibrate": "none", "balance_timesteps": args.balance_timesteps}
    # name: (ANN, reset, convert() arguments beyond the defaults, largest T)
    variants = {
        "soft": ("relu", "soft", rmp_snn, args.tmax),
        "hard": ("relu", "hard", rmp_snn, args.tmax),
        "default": ("relu", "soft", cal_t, args.tmax_calibrated),
        "default-plain": ("relu", "soft", {**cal_t, "signed": False}, args.tmax_calibrated),
        "default-per-layer": ("relu", "soft", {**cal_t, "per_channel": False}, args.tmax_calibrated),
        "default-hard": ("relu", "hard", cal_t, args.tmax_calibrated),
        "qcfs": ("qcfs", "soft", {}, args.tmax_calibrated),
        "qcfs-plain": ("qcfs", "soft", {"signed": False}, args.tmax_calibrated),
        "qcfs-calibrated": ("qcfs", "soft", {**cal_t, "calibrate": "bias"}, args.tmax_calibrated),
    }
    for name, (act, reset, kwargs, tmax) in variants.items():
        if args.variants and name not in args.variants:
            continue
        model, mean, std, acc_sub = anns[act]
        calib = torch.cat([x for x, _ in normalised(calib_set, mean, std)])
        t0 = time.perf_counter()
        snn = convert(model, calib, reset=reset, **kwargs)
        t_bal = time.perf_counter() - t0
        steps_v = [t for t in steps if t <= tmax]
        r = evaluate_over_time(snn, normalised(sub, mean, std, batch_size=100), timesteps=steps_v)
        r["ann_accuracy"] = acc_sub
        r["gap_to_ann"] = [acc_sub - a for a in r["accuracy"]]
        r["first_T_within_1pct"] = first_within(r, acc_sub, 0.01)
        r["first_T_within_3pct"] = first_within(r, acc_sub, 0.03)
        r["convert_kwargs"] = {"reset": reset, **kwargs}
        r["balance"], r["reset"], r["balance_seconds"] = snn.balance, reset, t_bal
        r["calibration"] = snn.calibration
        r["v_init"] = snn.if_nodes[0].v_init
        r["signed"] = snn.signed
        r["thresholds"] = snn.thresholds()
        result["snn"][name] = r
        acc = ", ".join(f"T={t}:{a:.3f}" for t, a in zip(r["timesteps"], r["accuracy"], strict=True))
        log(f"{name} ({t_bal:.1f} s to convert): {acc}; within 1% at T={r['first_T_within_1pct']}")
    if "soft" in result["snn"] and "hard" in result["snn"]:
        ts = result["snn"]["soft"]["first_T_within_1pct"]
        th = result["snn"]["hard"]["first_T_within_1pct"]
        result["hard_over_soft_T"] = (th / ts) if (ts and th) else None
    result["seconds"] = time.perf_counter() - t_all
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
