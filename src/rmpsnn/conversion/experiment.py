"""One conversion experiment as ``rmpsnn convert`` and the quickstart run it: balance on training
images, simulate soft and/or hard reset over T = 1, 2, 4, ..., and write JSON plus a figure."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..data import ImageArrays
from .convert import convert, evaluate_over_time, first_within

__all__ = ["conversion_experiment"]


def conversion_experiment(
    ann: nn.Module,
    *,
    model_name: str,
    mean: Sequence[float],
    std: Sequence[float],
    train: ImageArrays,
    test: ImageArrays,
    out: str | Path,
    resets: Sequence[str] = ("soft", "hard"),
    max_timesteps: int = 1024,
    calib_images: int = 256,
    batch_size: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    **convert_kwargs,
) -> dict:
    """Convert ``ann`` once per reset mode, evaluate each over time on ``test`` and write
    ``out`` (JSON) and ``out`` with ``.png``/``.svg`` (accuracy vs T).  Returns the JSON dict."""
    from ..analysis import plot_accuracy_vs_timesteps
    from ..training.ann import evaluate_arrays, normalised

    calib_set = train.balanced(calib_images, seed=seed + 1)
    calib = torch.cat([x for x, _ in normalised(calib_set, mean, std)]).to(device)
    ann_acc = evaluate_arrays(ann, test, mean, std, device)
    steps = [2**k for k in range(max_timesteps.bit_length()) if 2**k <= max_timesteps]
    result = {
        "model": model_name,
        "ann_accuracy": ann_acc,
        "test_images": len(test),
        "timesteps": steps,
        "variants": {},
    }
    log(f"ANN accuracy {ann_acc:.4f} on {len(test)} test images")
    for reset in resets:
        snn = convert(ann, calib, reset=reset, seed=seed, **convert_kwargs)
        r = evaluate_over_time(snn, normalised(test, mean, std, batch_size=batch_size), timesteps=steps)
        r["first_T_within_1pct"] = first_within(r, ann_acc, 0.01)
        r["thresholds"] = snn.thresholds()
        r["balance"] = snn.balance
        result["variants"][reset] = r
        log(
            f"{reset:>5} reset: "
            + "  ".join(f"T={t}:{a:.3f}" for t, a in zip(steps, r["accuracy"], strict=True))
        )
        log(f"       within 1% of the ANN at T={r['first_T_within_1pct']}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    curves = {f"{k} reset": (steps, v["accuracy"]) for k, v in result["variants"].items()}
    figs = plot_accuracy_vs_timesteps(
        curves,
        path.with_suffix(""),
        ann_accuracy=ann_acc,
        title=f"{model_name}: converted SNN accuracy vs timesteps",
    )
    result["files"] = [str(path), *map(str, figs)]
    return result
