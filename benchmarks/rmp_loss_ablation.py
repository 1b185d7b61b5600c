"""RMP-Loss ablation (the shape of RMP-Loss Table 1): the same spiking CNN, seed, data and epochs,
trained with and without RMP-Loss by the real trainer (`rmpsnn train`, configs/cpu.yaml); test
accuracy and quantisation error (mean |Dis|, eq. 8) of each arm, for one or more seeds.

CIFAR-10 from ../shared/data.  Per seed, the two arms run as two processes side by side (one
thread each), so they share the machine equally.  Each arm's run directory (metrics, best and
last checkpoints) is kept under --runs for the analysis figures.  Prints one JSON line; --out
also writes it.

    python benchmarks/rmp_loss_ablation.py [--epochs 3] [--train-limit 20000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _arm_command(args, arm: str, seed: int, out: Path) -> list[str]:
    overrides = [
        f"data.root={args.data}",
        f"data.train_limit={args.train_limit}",
        f"data.test_limit={args.test_limit or 'null'}",
        f"model.timesteps={args.timesteps}",
        f"model.kwargs.width=[{','.join(map(str, args.width))}]",
        f"optim.epochs={args.epochs}",
        f"optim.batch_size={args.batch_size}",
        f"optim.lr={args.lr}",
        f"rmp.enabled={'true' if arm == 'rmp' else 'false'}",
        f"rmp.k={args.k}",
        f"run.seed={seed}",
        f"run.out={out}",
        "run.overwrite=true",
        "run.progress=off",
    ]
    config = str(ROOT / "configs" / "cpu.yaml")
    return [sys.executable, "-m", "rmpsnn", "train", "--config", config, *overrides]


def _arm_result(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = history[-1]
    return {
        "run_dir": str(out),
        "test_accuracy": final["test_accuracy"],
        "quantization_error": final["quantization_error"],
        "quantization_mse": final["quantization_mse"],
        "per_layer": final["per_layer"],
        "history": [{k: v for k, v in h.items() if k != "per_layer"} for h in history],
        "seconds": summary["seconds"],
        "seconds_per_step": sum(h["epoch_seconds"] for h in history) / max(1, history[-1]["global_step"]),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shared")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--test-limit", type=int, default=5000, help="class-balanced test subset (0: all)")
    ap.add_argument("--width", type=int, nargs=3, default=[32, 64, 128])
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--k", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs", default="runs/ablation", help="where the arms' run directories go")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    per_seed = []
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        outs = {arm: Path(args.runs) / f"seed{seed}-{arm}" for arm in ("plain", "rmp")}
        procs = {}
        for arm, out in outs.items():
            log = open(Path(args.runs) / f"seed{seed}-{arm}.log", "w")
            cmd = _arm_command(args, arm, seed, out)
            procs[arm] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log)
        for arm, (p, log) in procs.items():
            if p.wait() != 0:
                raise SystemExit(f"arm {arm} (seed {seed}) failed; see {log.name}")
            log.close()
        arms = {arm: _arm_result(out) for arm, out in outs.items()}
        per_seed.append(
            {
                "seed": seed,
                "arms": arms,
                "accuracy_gain": arms["rmp"]["test_accuracy"] - arms["plain"]["test_accuracy"],
                "quantization_error_ratio": arms["rmp"]["quantization_error"]
                / arms["plain"]["quantization_error"],
            }
        )
        print(
            f"seed {seed}: plain {arms['plain']['test_accuracy']:.4f} / "
            f"q-err {arms['plain']['quantization_error']:.4f}  RMP-Loss {arms['rmp']['test_accuracy']:.4f} / "
            f"q-err {arms['rmp']['quantization_error']:.4f}",
            file=sys.stderr,
            flush=True,
        )

    def mean(key, arm):
        return statistics.fmean(s["arms"][arm][key] for s in per_seed)

    result = {
        "benchmark": "rmp_loss_ablation",
        "config": vars(args),
        "seeds": per_seed,
        "mean": {
            arm: {key: mean(key, arm) for key in ("test_accuracy", "quantization_error", "quantization_mse")}
            for arm in ("plain", "rmp")
        },
        "accuracy_gain_mean": statistics.fmean(s["accuracy_gain"] for s in per_seed),
        "accuracy_gain_per_seed": [s["accuracy_gain"] for s in per_seed],
        "quantization_error_ratio_mean": statistics.fmean(s["quantization_error_ratio"] for s in per_seed),
        "seconds": time.perf_counter() - t0,
    }
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
