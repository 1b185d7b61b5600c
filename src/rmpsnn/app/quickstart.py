"""``rmpsnn quickstart``: both of rmpsnn's routes on real data in a few minutes on a CPU.

1. Train a small ReLU ANN and convert it three ways: rmpsnn's default conversion (calibrated, soft
   reset, signed neurons), and the calibrated conversion with plain soft-reset (RMP) neurons and
   the same with hard reset -- the RMP-SNN comparison; evaluate each over T = 1, 2, 4, 8, 12, 16
   next to the ANN, image by image on the same test images (paired comparisons); hard reset also
   on further test images, since its interval is the wide one (``--hard-reset-images``).
2. Train a small spiking CNN directly, with and without RMP-Loss (same seed, data and epochs),
   and compare accuracy and quantisation error.
3. Write a report (accuracy vs T, membrane-potential distributions, firing rates, energy) to
   the run directory, and ``summary.json`` with every figure, its sample size and 95 % interval,
   the claims those intervals support (:mod:`rmpsnn.app.claims`), data sizes, seed, machine and
   the time each phase took.

Data: CIFAR-10 from ``../shared/data`` when present, else scikit-learn's bundled handwritten
digits (8x8, 1797 images) when scikit-learn is installed, else a clear error.  The budget is
deliberately tiny (subsets, few epochs): the numbers show the effects, not the papers' figures.
RMP-SNN as published (spike-max thresholds, no calibration) needs T = 128-512 and is left to
``rmpsnn convert`` and ``benchmarks/conversion_curve.py``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..analysis import plot_accuracy_vs_timesteps
from ..data import DataConfig, image_arrays, shared_cifar10_zip
from ..devices import resolve_device
from ..errors import DataError
from ..evaluation import normalised
from ..io import write_json
from ..training import train, train_ann
from .claims import (
    DEFAULT,
    HARD,
    SOFT,
    conversion_claims,
    conversion_per_image,
    direct_training_claim,
    machine_info,
)
from .configs import QuickstartOptions
from .report import write_report

__all__ = ["CONVERSION_VARIANTS", "format_summary", "run_quickstart"]

# label -> convert() arguments.  The first is rmpsnn's default conversion; the next two differ only
# in the reset -- the RMP-SNN comparison, with rmpsnn's thresholds and calibration and plain IF
# neurons.  The labels are the keys rmpsnn.app.claims looks up.
CONVERSION_VARIANTS = {
    DEFAULT: {},
    SOFT: {"reset": "soft", "signed": False},
    HARD: {"reset": "hard"},
}

# the report's monitored evaluation (membrane histograms, firing rates, energy) needs no large set
REPORT_IMAGES = 500


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


def run_quickstart(args: QuickstartOptions) -> int:
    args = dataclasses.replace(args, device=str(resolve_device(args.device)))  # once, for every stage
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out = Path(args.out)
    spec = _pick_data(args.data)
    data = DataConfig.from_spec(spec)
    out.mkdir(parents=True, exist_ok=True)  # once the data are found: a refusal leaves nothing
    small = data.dataset == "digits"
    torch.manual_seed(args.seed)
    train_set, test_set = image_arrays(data, "train"), image_arrays(data, "test")
    test_conv = test_set if small else test_set.balanced(args.test_images, seed=args.seed)
    # hard reset's comparison with the ANN also on further test images, disjoint from test_conv
    per_class = max(1, args.test_images // test_set.num_classes)
    extra = max(0, args.hard_reset_images - len(test_conv)) // test_set.num_classes
    test_hard = None if small or not extra else test_set.per_class(extra, seed=args.seed, skip=per_class)
    test_hard = test_hard if test_hard is not None and len(test_hard) else None
    print(
        f"rmpsnn quickstart: {spec if spec != 'shared' else 'CIFAR-10 (../shared/data)'}, "
        f"{len(train_set)} train / {len(test_set)} test images of {tuple(train_set.images.shape[1:])}; "
        f"results in {out}\n"
    )
    phases: dict[str, float] = {}  # seconds from the start at which each stage began

    def stage(title: str) -> None:
        phases[title] = time.perf_counter() - t_start
        print(f"\n== {title} ({phases[title]:.0f} s elapsed)", flush=True)

    # 1. ANN -> SNN conversion, soft vs hard reset
    stage("1/3  train a ReLU ANN, convert it with soft (RMP) and hard reset")
    conv, steps, ann_train, conversion_seconds = _conversion_stage(
        args, out, spec, data, train_set, test_conv, test_hard
    )

    # 2. direct training with and without RMP-Loss
    stage("2/3  train a spiking CNN directly (T=4), without and with RMP-Loss")
    runs, n_direct, direct_test = _direct_stage(args, out, data, train_set, test_set)

    # 3. report
    stage("3/3  report: figures, tables, energy")
    paths = write_report(
        [out / "without-rmp-loss", out / "with-rmp-loss", out / "conversion.json"],
        out / "report",
        images=min(args.test_images, REPORT_IMAGES),
        device=args.device,
        title="rmpsnn quickstart",
    )
    summary = {
        "data": {
            "dataset": data.dataset,
            "ann_train_images": ann_train,
            "direct_train_images": n_direct,
            "conversion_test_images": conv["test_images"],
            "hard_reset_test_images": conv["test_images"] + (len(test_hard) if test_hard is not None else 0),
            "direct_test_images": direct_test,
            "calibration_images": conv["calibration_images"],
        },
        "seed": args.seed,
        "epochs": args.epochs,
        "machine": machine_info(),
        "timesteps": steps,
        "ann_accuracy": conv["ann_accuracy"],
        "conversion": {k: v["accuracy"] for k, v in conv["variants"].items()},
        "conversion_claims": conversion_claims(conv),
        "hard_reset_extra": _extra_summary(conv),
        "direct": {k: v["final"] for k, v in runs.items()},
        "direct_claim": direct_training_claim(runs, direct_test),
        "stage_starts_s": phases,
        "conversion_seconds": conversion_seconds,  # of stage 1, after the ANN's training
        "seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "report": str(paths["markdown"]),
    }
    print(f"\n== Summary ({summary['seconds']:.0f} s, {summary['cpu_seconds']:.0f} CPU-s)\n")
    print(format_summary(summary))
    print(f"\nReport: {paths['markdown']}  (self-contained: {paths['html']})")
    write_json(out / "summary.json", summary)
    return 0


# the ANN is converted, so it gets the wider net; direct training runs T=4 forward passes
ANN_WIDTH = {"digits": (16, 32, 64), "default": (32, 64, 128)}  # digits: 8x8 images
SNN_WIDTH = (16, 32, 64)


def _conversion_stage(args: QuickstartOptions, out: Path, spec: str, data, train_set, test_conv, test_hard):
    """Stage 1: train the ReLU ANN, convert it three ways and evaluate each image by image (hard
    reset also on ``test_hard``, when given); writes ``conversion.json`` and the accuracy-vs-T
    figure.  Returns ``(result, T grid, ANN training images, seconds spent converting and
    simulating)``."""
    small = data.dataset == "digits"
    size = train_set.images.shape[-1]
    width = ANN_WIDTH["digits" if small else "default"]
    ann_train = len(train_set) if small else min(args.train_images, len(train_set))
    ann, info = train_ann(
        "ann_cpu_net",
        data=spec,
        epochs=args.epochs,
        batch_size=min(128, max(8, len(train_set) // 8)),
        lr=0.05,
        model_kwargs={"width": width, "image_size": size, "in_channels": train_set.images.shape[1]},
        train_limit=None if small else args.train_images,
        test_limit=None if small else len(test_conv),
        seed=args.seed,
        device=args.device,
        out=str(out / "ann.safetensors"),
        run_dir=str(out / "ann"),  # the ANN's run: metrics and checkpoints, like the direct runs
    )
    t_conv = time.perf_counter()
    calib_set = train_set.balanced(128, seed=args.seed + 1)
    calibration = torch.cat([x for x, _ in normalised(calib_set, info["mean"], info["std"])])
    steps = list(args.timesteps)
    further = None
    if test_hard is not None:
        print(f"hard reset on {len(test_hard)} further test images too (its interval is the wide one)")
        further = {HARD: list(normalised(test_hard, info["mean"], info["std"], batch_size=100))}
    conv = conversion_per_image(
        ann,
        CONVERSION_VARIANTS,
        calibration,
        list(normalised(test_conv, info["mean"], info["std"], batch_size=100)),
        steps,
        seed=args.seed,
        device=args.device,
        further=further,
    )
    conv.update(model="ann_cpu_net", dataset=data.dataset, train_images=ann_train, seed=args.seed)
    write_json(out / "conversion.json", conv)
    plot_accuracy_vs_timesteps(
        {k: (steps, v["accuracy"]) for k, v in conv["variants"].items()},
        out / "conversion",
        ann_accuracy=conv["ann_accuracy"],
        title="ann_cpu_net: converted SNN accuracy vs timesteps",
    )
    conversion_seconds = time.perf_counter() - t_conv
    return conv, steps, ann_train, conversion_seconds


def _extra_summary(conv: dict) -> dict | None:
    """The further test images of hard reset's comparison: their size and accuracies."""
    further = conv["variants"].get(HARD, {}).get("further")
    if further is None:
        return None
    return {
        "test_images": further["images"],
        "ann_accuracy": further["ann_accuracy"],
        "accuracy": further["accuracy"],
    }


def _direct_stage(args: QuickstartOptions, out: Path, data, train_set, test_set):
    """Stage 2: the same spiking CNN trained directly without and with RMP-Loss (same seed, data
    and epochs).  Returns ``(runs, training images, test images)``."""
    small = data.dataset == "digits"
    common = [
        f"data.dataset={data.dataset}",
        f"data.root={data.root}",
        f"model.kwargs.width=[{','.join(map(str, SNN_WIDTH))}]",
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
    direct_test = len(test_set) if small else min(args.test_images, len(test_set))
    if not small:
        common += [f"data.train_limit={args.direct_train_images}", f"data.test_limit={direct_test}"]
    n_direct = len(train_set) if small else min(args.direct_train_images, len(train_set))
    print(
        f"direct training: {n_direct} training images, {direct_test} test images, {args.epochs} epochs each"
    )
    runs = {}
    for arm, on in (("without-rmp-loss", "false"), ("with-rmp-loss", "true")):
        print(f"-- {arm}")
        runs[arm] = train(None, [*common, f"rmp.enabled={on}", f"run.out={out / arm}"])
    return runs, n_direct, direct_test


def format_summary(summary: dict) -> str:
    """The quickstart's closing tables (from its ``summary.json``): accuracies with 95 % intervals,
    the "within 1 % from T on" column and the claims the intervals support."""
    steps, claims = summary["timesteps"], summary["conversion_claims"]
    n = claims["test_images"]
    ann = claims["ann"]
    lines = [
        f"Conversion of a ReLU ANN ({_ci(ann)} test accuracy), accuracy (%) at T steps, "
        f"n = {n} test images (95 % interval of each: about "
        f"±{_half_width(claims):.1f} points):",
        "  " + f"{'T':<34}" + "".join(f"{t:>6}" for t in steps) + "   within 1 % from T on",
    ]
    for label, acc in summary["conversion"].items():
        v = claims["variants"][label]
        within = f"T = {v['within_from']}" if v["within_from"] else f"> {steps[-1]}"
        lines.append("  " + f"{label:<34}" + "".join(f"{100 * a:>6.1f}" for a in acc) + f"   {within}")
    lines.append(f"\nSNN - ANN (points, paired on the same {n} images, 95 % interval):")
    for label, v in claims["variants"].items():
        i = steps.index(v["within_from"]) if v["within_from"] else len(steps) - 1
        d = v["minus_ann"][i]
        lines.append(
            f"  {label:<34} T = {steps[i]:<4} {100 * d['value']:+5.1f} [{100 * d['low']:+.1f}, "
            f"{100 * d['high']:+.1f}]"
        )
    lines.append("\nClaims (stated only when the 95 % intervals support them):")
    lines += [f"  - {c['text']}" for c in claims["claims"].values()]
    direct = summary["direct_claim"]
    m = summary["data"]["direct_test_images"]
    lines.append(f"\nDirect training, T=4, {summary['epochs']} epochs, n = {m} test images:")
    lines.append(f"  {'':<20}{'test accuracy [95 % interval]':>32}{'quantization error':>20}")
    for arm, f in summary["direct"].items():
        a = direct["accuracy"][arm]
        cell = _ci(a)
        lines.append(f"  {arm:<20}{cell:>32}{f['quantization_error']:>20.4f}")
    lines.append(f"  - {direct['text']}")
    return "\n".join(lines)


def _half_width(claims: dict) -> float:
    """The widest half-interval (points) among the accuracy cells, for the table's caption."""
    cells = [c for v in claims["variants"].values() for c in v["accuracy"]]
    return max(100 * (c["high"] - c["low"]) / 2 for c in cells)


def _ci(interval: dict) -> str:
    """``"51.0 % [47.9, 54.1]"`` from an :class:`~rmpsnn.analysis.stats.Interval`'s dict."""
    return f"{100 * interval['value']:.1f} % [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]"
