"""One conversion experiment as ``rmpsnn convert`` and the quickstart run it: balance (and calibrate)
on training images, simulate each variant (soft/hard reset, balancing, calibration) over
T = 1, 2, 4, ..., and write JSON plus a figure; :class:`ConvertConfig` (:mod:`.configs`) is the
command's typed configuration."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..analysis import plot_accuracy_vs_timesteps
from ..checkpoint import load_model, resolve_checkpoint
from ..conversion import convert, evaluate_over_time, first_within
from ..data import ImageArrays, image_arrays
from ..data.resolve import channel_stats
from ..devices import resolve_device
from ..errors import ConfigError, InputError
from ..evaluation import check_model_matches_data, evaluate_arrays, normalised
from ..io import check_output_path, write_json
from ..limits import probe_model
from ..models import list_models
from .configs import ConvertConfig
from .user_model import is_user_model_spec, load_user_model

__all__ = ["conversion_experiment", "run_conversion"]


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
    variants: Mapping[str, Mapping] | None = None,
    max_timesteps: int = 1024,
    calib_images: int = 128,
    batch_size: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    progress: bool | Callable[[str], None] | None = None,
    **convert_kwargs,
) -> dict:
    """Convert ``ann`` once per variant, evaluate each over time on ``test`` and write ``out``
    (JSON) and ``out`` with ``.png``/``.svg`` (accuracy vs T).  Returns the JSON dict.

    ``variants`` maps a label to the :func:`convert` arguments of that variant (``convert_kwargs``
    apply to all); by default one variant per entry of ``resets``, labelled ``"<reset> reset"``.
    ``progress`` goes to :func:`convert` and :func:`evaluate_over_time`.
    """
    for name, value in (
        ("max_timesteps", max_timesteps),
        ("calib_images", calib_images),
        ("batch_size", batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if variants is None:
        variants = {f"{r} reset": {"reset": r} for r in resets}
    calib_set = train.balanced(calib_images, seed=seed + 1)
    calib = torch.cat([x for x, _ in normalised(calib_set, mean, std)]).to(device)
    # one line, before any evaluation, when the ANN cannot take the data's images (a user model
    # built for another size: a leading flatten hides that from the converter's layer check)
    probe_model(ann, list(test.images.shape[1:]), what="the ANN")
    ann_acc = evaluate_arrays(ann, test, mean, std, device)
    steps = [2**k for k in range(max_timesteps.bit_length()) if 2**k <= max_timesteps]
    result = {
        "model": model_name,
        "ann_accuracy": ann_acc,
        "test_images": len(test),
        "calibration_images": len(calib_set),
        "timesteps": steps,
        "variants": {},
    }
    log(f"ANN accuracy {ann_acc:.4f} on {len(test)} test images")
    for label, kwargs in variants.items():
        result["variants"][label] = _variant(
            ann, calib, test, mean, std, steps, label, {**convert_kwargs, **kwargs},
            ann_accuracy=ann_acc, seed=seed, batch_size=batch_size, progress=progress, log=log,
        )  # fmt: skip
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    curves = {k: (steps, v["accuracy"]) for k, v in result["variants"].items()}
    figs = plot_accuracy_vs_timesteps(
        curves,
        path.with_suffix(""),
        ann_accuracy=ann_acc,
        title=f"{model_name}: converted SNN accuracy vs timesteps",
    )
    result["files"] = [str(path), *map(str, figs)]
    return result


def _variant(
    ann, calib, test, mean, std, steps, label, kwargs, *, ann_accuracy, seed, batch_size, progress, log
):
    """Convert ``ann`` with ``kwargs`` and evaluate it at every T of ``steps`` on ``test``; logs
    the accuracies and the "within 1 % from T on" point.  Returns the variant's result."""
    t0 = time.perf_counter()
    snn = convert(ann, calib, seed=seed, progress=progress, **kwargs)
    t_convert = time.perf_counter() - t0
    r = evaluate_over_time(
        snn,
        normalised(test, mean, std, batch_size=batch_size),
        timesteps=steps,
        progress=progress,
        total_images=len(test),
    )
    r["first_T_within_1pct"] = first_within(r, ann_accuracy, 0.01)
    r["thresholds"] = snn.thresholds()
    r["balance"], r["reset"] = snn.balance, snn.reset
    r["calibrated"] = snn.calibration is not None
    r["v_init"] = snn.if_nodes[0].v_init
    r["signed"] = snn.signed
    r["convert_seconds"] = t_convert
    log(
        f"{label}: "
        + "  ".join(f"T={t}:{a:.3f}" for t, a in zip(steps, r["accuracy"], strict=True))
        + f"  ({t_convert:.0f} s to convert, {r['seconds']:.0f} s to simulate)"
    )
    within = r["first_T_within_1pct"]
    log(
        f"    within 1 % of the ANN from T = {within} on (every longer T simulated stays within)"
        if within
        else f"    not within 1 % of the ANN at T = {steps[-1]}"
    )
    return r


# ----------------------------------------------------------------------------- `rmpsnn convert`
def run_conversion(cfg: ConvertConfig, *, progress=None, log: Callable[[str], None] = print) -> dict:
    """What ``rmpsnn convert`` does: load the ANN of ``cfg.ann``, then :func:`conversion_experiment`
    on ``cfg.data`` (training images for balancing and calibration, test images to evaluate)."""
    device = resolve_device(cfg.run.device, option="run.device")
    json_out = {"writes": "the result as JSON", "suffix": ".json", "key": "run.out"}
    check_output_path(cfg.run.out, reads=[cfg.ann.checkpoint], **json_out)
    if isinstance(cfg.ann.model, str) and cfg.ann.model.endswith(".py"):
        raise ConfigError(
            f"ann.model={cfg.ann.model!r} names a file but not what in it to build: give "
            f"{cfg.ann.model}:ClassName (or :factory_function)",
            key="ann.model",
        )
    user = is_user_model_spec(cfg.ann.model)
    if not user:  # before the data: a wrong checkpoint is named even where the data are missing
        model, info = _zoo_model(cfg, device)
    train = image_arrays(cfg.data, "train", cfg.run.seed)
    test = image_arrays(cfg.data, "test", cfg.run.seed).balanced(cfg.data.test_limit, seed=cfg.run.seed)
    if user:
        model, info = _user_model(cfg, train, device)
    else:
        check_model_matches_data(
            model, info, num_classes=test.num_classes, input_shape=test.images.shape[1:],
            where=str(cfg.ann.checkpoint), data_name=f"data set {cfg.data.dataset!r}",
        )  # fmt: skip
    c = cfg.conversion
    return conversion_experiment(
        model,
        model_name=info["model"],
        mean=info["mean"],
        std=info["std"],
        train=train,
        test=test,
        out=cfg.run.out,
        resets=["soft", "hard"] if c.reset == "both" else [c.reset],
        calibrate=c.calibrate,
        calibration_timesteps=c.calibration_timesteps,
        progress=progress,
        max_timesteps=cfg.eval.timesteps,
        calib_images=c.calib_images,
        batch_size=cfg.eval.batch_size,
        seed=cfg.run.seed,
        device=device,
        balance=c.balance,
        percentile=c.percentile,
        scale=c.scale,
        per_channel=c.per_channel,
        encoding=c.encoding,
        v_init=cfg.v_init(),
        signed="auto" if c.signed is None else c.signed,
        balance_timesteps=c.balance_timesteps,
        maxpool=c.maxpool,
        log=log,
    )


def _user_model(cfg: ConvertConfig, train: ImageArrays, device) -> tuple[nn.Module, dict]:
    """A user's model (``ann.model = file.py:Name``) with its weights, and its normalisation."""
    model = load_user_model(cfg.ann.model, cfg.ann.checkpoint, kwargs=cfg.ann.kwargs, device=device)
    shape = list(train.images.shape[1:])
    wanted = cfg.numbers("input_shape")
    if wanted is not None and [int(v) for v in wanted] != shape:
        raise ConfigError(
            f"ann.input_shape = {cfg.ann.input_shape} but the images of data.dataset = "
            f"{cfg.data.dataset!r} are {','.join(map(str, shape))} (channels, height, width)"
        )
    mean, std = cfg.numbers("mean"), cfg.numbers("std")
    if mean is None or std is None:
        stats = channel_stats(train)
        mean, std = mean or stats[0], std or stats[1]
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != shape[0]:
            raise ConfigError(f"ann.{key} has {len(values)} values for images with {shape[0]} channels")
    return model, {"model": cfg.ann.model, "mean": mean, "std": std}


def _zoo_model(cfg: ConvertConfig, device) -> tuple[nn.Module, dict]:
    """A zoo ANN from a `rmpsnn train-ann` checkpoint, with its stored normalisation."""
    path = resolve_checkpoint(cfg.ann.checkpoint)
    model, info = load_model(path, model_name=cfg.ann.model, device=device)
    if info["model"] not in list_models("ann"):
        raise InputError(
            f"{path} holds the spiking model {info['model']!r} (from `rmpsnn train`); convert needs an "
            f"ANN checkpoint from `rmpsnn train-ann` (models: {', '.join(list_models('ann'))}). "
            f"Evaluate a spiking run with `rmpsnn evaluate --checkpoint {path}`"
        )
    if info.get("mean") is None:
        raise InputError(f"{path} stores no input statistics (mean/std); train it with `rmpsnn train-ann`")
    return model, info
