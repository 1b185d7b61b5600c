"""``rmpsnn quickstart``: both of rmpsnn's routes on real data in a few minutes on a CPU.

1. Train a small ReLU ANN and convert it four ways: rmpsnn's default conversion (calibrated, soft
   reset, signed neurons), the calibrated conversion with plain soft-reset (RMP) neurons and the
   same with hard reset -- the RMP-SNN comparison -- and RMP-SNN exactly as published (spike-max
   thresholds, no calibration); evaluate each over T = 1, 2, 4, ..., 64 next to the ANN.
2. Train a small spiking CNN directly, with and without RMP-Loss (same seed, data and epochs),
   and compare accuracy and quantisation error.
3. Write a report (accuracy vs T, membrane-potential distributions, firing rates, energy) to
   the run directory.

Data: CIFAR-10 from ``../shared/data`` when present, else scikit-learn's bundled handwritten
digits (8x8, 1797 images) when scikit-learn is installed, else a clear error.  The budget is
deliberately tiny (subsets, few epochs): the numbers show the effects, not the papers' figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..data import DataConfig, image_arrays, shared_cifar10_zip
from ..errors import DataError
from ..io import write_json
from ..training import train, train_ann
from .experiment import conversion_experiment
from .report import write_report

__all__ = ["CONVERSION_VARIANTS", "run_quickstart"]

# label -> convert() arguments.  The first is rmpsnn's default conversion; the next two differ only
# in the reset -- the RMP-SNN comparison, with rmpsnn's thresholds and calibration and plain IF
# neurons; the last is RMP-SNN as published.
CONVERSION_VARIANTS = {
    "rmpsnn default (soft, signed)": {},
    "soft reset (RMP), calibrated": {"reset": "soft", "signed": False},
    "hard reset, calibrated": {"reset": "hard"},
    "soft reset, spike-max (RMP-SNN)": {"reset": "soft", "balance": "spike-max", "calibrate": "none"},
}


def _pick_data(spec: str) -> str:
    """The data spec (as :meth:`DataConfig.from_spec` reads it) that ``--data`` stands for."""
    if spec == "auto":
        if shared_cifar10_zip() is not None:
            return "shared"
        try:
            import sklearn  # noqa: F401
        except ImportError as e:
            raise DataError(
                "quickstart: no offline data found -- put the CIFAR-10 JPEG zip at "
                "../shared/data/cifar10-jpeg.zip, pip install scikit-learn (for its bundled digits), or pass "
                "--data PATH (a CIFAR root or an image folder with train/ and test/)"
            ) from e
        return "digits"
    return spec


def run_quickstart(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = _pick_data(args.data)
    data = DataConfig.from_spec(spec)
    small = data.dataset == "digits"
    torch.manual_seed(args.seed)
    train_set, test_set = image_arrays(data, "train"), image_arrays(data, "test")
    size = train_set.images.shape[-1]
    print(
        f"rmpsnn quickstart: {spec if spec != 'shared' else 'CIFAR-10 (../shared/data)'}, "
        f"{len(train_set)} train / {len(test_set)} test images of {tuple(train_set.images.shape[1:])}; "
        f"results in {out}\n"
    )
    # the ANN is converted, so it gets the wider net; direct training runs T=4 forward passes
    width, snn_width = ((16, 32, 64), (16, 32, 64)) if small else ((32, 64, 128), (16, 32, 64))

    def stage(title: str) -> None:
        print(f"\n== {title} ({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)

    # 1. ANN -> SNN conversion, soft vs hard reset
    stage("1/3  train a ReLU ANN, convert it with soft (RMP) and hard reset")
    ann_limit = None if small else args.train_images
    ann, info = train_ann(
        "ann_cpu_net",
        data=spec,
        epochs=args.epochs,
        batch_size=min(128, max(8, len(train_set) // 8)),
        lr=0.05,
        model_kwargs={"width": width, "image_size": size, "in_channels": train_set.images.shape[1]},
        train_limit=ann_limit,
        test_limit=None if small else 1000,
        seed=args.seed,
        device=args.device,
        out=str(out / "ann.safetensors"),
        run_dir=str(out / "ann"),  # the ANN's run: metrics and checkpoints, like the direct runs
    )
    test_conv = test_set if small else test_set.balanced(args.test_images, seed=args.seed)
    conv = conversion_experiment(
        ann,
        model_name="ann_cpu_net",
        mean=info["mean"],
        std=info["std"],
        train=train_set,
        test=test_conv,
        out=out / "conversion.json",
        variants=CONVERSION_VARIANTS,
        max_timesteps=args.max_timesteps,
        seed=args.seed,
        device=args.device,
    )

    # 2. direct training with and without RMP-Loss
    stage("2/3  train a spiking CNN directly (T=4), without and with RMP-Loss")
    common = [
        f"data.dataset={data.dataset}",
        f"data.root={data.root}",
        f"model.kwargs.width=[{','.join(map(str, snn_width))}]",
        "model.readout=mean",
        f"optim.batch_size={min(64, max(8, len(train_set) // 8))}",
        f"optim.epochs={args.epochs}",
        "optim.lr=0.05",
        "optim.nesterov=true",
        "optim.warmup_epochs=1",
        "optim.scale_wide_linear=true",
        f"run.seed={args.seed}",
        f"run.device={args.device}",
        "run.overwrite=true",
    ]
    if not small:
        common += [f"data.train_limit={args.train_images // 2}", f"data.test_limit={args.test_images}"]
    n_direct = "all" if small else args.train_images // 2
    print(f"direct training: {n_direct} training images, {args.epochs} epochs each")
    runs = {}
    for arm, on in (("without-rmp-loss", "false"), ("with-rmp-loss", "true")):
        print(f"-- {arm}")
        runs[arm] = train(None, [*common, f"rmp.enabled={on}", f"run.out={out / arm}"])

    # 3. report
    stage("3/3  report: figures, tables, energy")
    paths = write_report(
        [out / "without-rmp-loss", out / "with-rmp-loss", out / "conversion.json"],
        out / "report",
        images=args.test_images,
        device=args.device,
        title="rmpsnn quickstart",
    )

    # the summary table
    steps, ann_acc = conv["timesteps"], conv["ann_accuracy"]
    print(f"\n== Summary ({time.perf_counter() - t_start:.0f} s)\n")
    print(f"Conversion of a ReLU ANN ({100 * ann_acc:.1f} % test accuracy), accuracy (%) at T steps:")
    print("  " + f"{'T':<34}" + "".join(f"{t:>6}" for t in steps) + "   within 1 % at")
    for label, v in conv["variants"].items():
        within = f"T = {v['first_T_within_1pct']}" if v["first_T_within_1pct"] else f"> {steps[-1]}"
        print("  " + f"{label:<34}" + "".join(f"{100 * a:>6.1f}" for a in v["accuracy"]) + f"   {within}")
    print(f"\nDirect training, T=4, {args.epochs} epochs:")
    print(f"  {'':<20}{'test accuracy':>15}{'quantization error':>20}")
    for arm, s in runs.items():
        f = s["final"]
        print(f"  {arm:<20}{100 * f['test_accuracy']:>14.1f}%{f['quantization_error']:>20.4f}")
    print(f"\nReport: {paths['markdown']}  (self-contained: {paths['html']})")
    write_json(
        out / "summary.json",
        {
            "conversion": {k: v["accuracy"] for k, v in conv["variants"].items()},
            "ann_accuracy": ann_acc,
            "timesteps": steps,
            "direct": {k: v["final"] for k, v in runs.items()},
            "seconds": time.perf_counter() - t_start,
        },
    )
    return 0
