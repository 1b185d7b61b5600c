"""The conversion experiment behind conversion_vgg16.py and conversion_resnet20.py: train the ANN
on CIFAR-10 within the time budget, convert it with soft and hard reset -- RMP-SNN's spike-max
balancing and rmpsnn's default (mse thresholds, θ/2, bias calibration) -- and evaluate the whole
test set at T = 1, 2, 4, ..., 2048 from one simulation per variant."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import PAPER, Log, accuracy, environment, load_cifar, parse_args, train_ann, write_json

from rmpsnn.app.experiment import conversion_experiment
from rmpsnn.models import create

VARIANTS = {
    "soft reset, spike-max (RMP-SNN)": {"reset": "soft", "balance": "spike-max", "calibrate": "none"},
    "hard reset, spike-max": {"reset": "hard", "balance": "spike-max", "calibrate": "none"},
    "soft reset, calibrated (rmpsnn default)": {"reset": "soft"},
    "hard reset, calibrated": {"reset": "hard"},
}


def _options(ap):
    ap.add_argument("--max-timesteps", type=int, default=2048, help="largest T (powers of two up to it)")
    ap.add_argument("--calib-images", type=int, default=256, help="training images for balancing")
    ap.add_argument("--eval-batch", type=int, default=500, help="test images simulated at once")


def run(model_name: str, paper_key: str, description: str, budget_min: float, argv=None) -> dict:
    args = parse_args(f"conversion_{paper_key}", description, budget_min, argv, _options)
    if args.smoke:
        args.max_timesteps, args.calib_images, args.eval_batch = min(args.max_timesteps, 8), 16, 100
    log = Log(args.out)
    log(f"{args.name}: {environment(args.device)}; budget {args.budget_min:g} min; out {args.out}")
    train, test, data, mean, std = load_cifar(args, log)
    ann = create(model_name, num_classes=10)
    history = train_ann(ann, data, mean, std, args, log)
    ann = ann.float().eval().to(memory_format=torch.contiguous_format)  # the converter traces it
    ann_acc = accuracy(ann, *data["test"], mean, std)
    log(f"ANN test accuracy {ann_acc:.4f} after {len(history)} epochs")
    result = conversion_experiment(
        ann,
        model_name=model_name,
        mean=mean,
        std=std,
        train=train,
        test=test,
        out=args.out / "conversion.json",
        variants=VARIANTS,
        max_timesteps=args.max_timesteps,
        calib_images=args.calib_images,
        batch_size=args.eval_batch,
        seed=args.seed,
        device=args.device,
        log=log,
        progress=log,
        balance_timesteps=16 if args.smoke else 64,
    )
    summary = {
        "experiment": args.name,
        "environment": environment(args.device),
        "smoke": args.smoke,
        "budget_min": args.budget_min,
        "ann": {"model": model_name, "epochs": len(history), "test_accuracy": ann_acc, "history": history},
        "timesteps": result["timesteps"],
        "variants": {
            k: {"accuracy": v["accuracy"], "first_T_within_1pct": v["first_T_within_1pct"]}
            for k, v in result["variants"].items()
        },
        "paper": PAPER[paper_key],
        "files": result["files"],
    }
    write_json(args.out / "summary.json", summary)
    lines = [f"| variant | {' | '.join(f'T={t}' for t in result['timesteps'])} | within 1 % at |", ""]
    lines[1] = "|---|" + "---|" * (len(result["timesteps"]) + 1)
    for k, v in result["variants"].items():
        cells = " | ".join(f"{100 * a:.2f}" for a in v["accuracy"])
        lines.append(f"| {k} | {cells} | {v['first_T_within_1pct'] or '-'} |")
    table = (
        f"ANN ({model_name}, {len(history)} epochs): {100 * ann_acc:.2f} % (paper: "
        f"{100 * PAPER[paper_key]['ann_accuracy']:.2f} %)\n\n" + "\n".join(lines) + "\n"
    )
    (args.out / "table.md").write_text(table)
    log("\n" + table)
    return summary
