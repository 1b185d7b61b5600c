"""``rmpsnn evaluate`` and ``rmpsnn export``: what they do with a stored run, given their typed
options (:class:`~rmpsnn.app.configs.EvaluateOptions`, :class:`~rmpsnn.app.configs.ExportOptions`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..checkpoint import load_model, resolve_checkpoint
from ..errors import InputError
from ..export.inputs import input_shape_of, sample_input
from ..io import check_output_path, write_json
from ..limits import probe_model
from ..models import list_models
from ..training.evaluate import evaluate_model
from ..training.runs import load_run
from .configs import EvaluateOptions, ExportOptions

__all__ = ["evaluate_checkpoint", "export_checkpoint"]


def evaluate_checkpoint(opts: EvaluateOptions, *, log: Callable[[str], None] = print) -> dict:
    """Test accuracy and quantization error of the model of ``opts.checkpoint`` on the test set it
    was trained on (``opts.data``: ``key=value`` overrides of its data section)."""
    if opts.out:
        check_output_path(opts.out, writes="the result as JSON", suffix=".json", reads=[opts.checkpoint])
    overrides = [f"data.{k.removeprefix('data.')}" for k in opts.data]  # data.test_limit=... too
    run = load_run(opts.checkpoint, device=opts.device, overrides=overrides, timesteps=opts.timesteps)
    model, info = run.model, run.info
    ev = evaluate_model(model, run.data.test(), v_th=run.v_th, device=run.device, data=run.data)
    steps = getattr(model, "timesteps", None)
    result = {"checkpoint": str(run.checkpoint), "model": info["model"], "timesteps": steps, **ev}
    q = ev["quantization_error"]
    if Path(opts.checkpoint).is_dir() and run.checkpoint.name == "last.safetensors":
        log(f"{opts.checkpoint} has no best.safetensors (no epoch finished): evaluating last.safetensors")
    log(
        f"{info['model']}{f' T={steps}' if steps else ''}: test accuracy {ev['accuracy']:.4f} "
        f"on {ev['images']} images"
        + (f", quantization error {q:.4f} (mean Dis^2 {ev['quantization_mse']:.4f})" if q is not None else "")
    )
    for name, q in ev["per_layer"].items():
        log(f"  {name:<24} |Dis| {q['mean_abs']:.4f}")
    if opts.out:
        write_json(opts.out, result)
        log(f"wrote {opts.out}")
    return result


def export_checkpoint(opts: ExportOptions, *, log: Callable[[str], None] = print) -> list[str]:
    """Write the model of ``opts.checkpoint`` as NIR (for ``opts.target``'s importer, or rmpsnn's
    exact graph) or as safetensors + JSON; returns the files written."""
    checkpoint = resolve_checkpoint(opts.checkpoint)
    nir = opts.format != "safetensors"
    if not nir and opts.target:
        raise InputError(
            f"target={opts.target!r} names a NIR importer; --format safetensors writes rmpsnn's own "
            f"weights: drop --target, or use --format nir",
            key="target",
        )
    out = Path(opts.out)
    if nir and out.suffix.lower() == ".nir":
        check_output_path(out, writes="a NIR graph", suffix=".nir", reads=[checkpoint])
    else:
        what = "model.nir" if nir else "model.safetensors and model.json"
        check_output_path(out, writes=what, reads=[checkpoint])
    model, info = load_model(checkpoint)
    if not nir:
        from ..export import export_safetensors

        extra = {k: v for k, v in info.items() if k not in ("model", "kwargs")}
        files = export_safetensors(
            model, opts.out, model_name=info["model"], model_kwargs=info["kwargs"], **extra
        )
        log(f"wrote {files['weights']} and {files['architecture']}")
        return [str(files["weights"]), str(files["architecture"])]
    if info["model"] in list_models("ann"):
        raise InputError(
            f"{checkpoint} holds the ANN {info['model']!r}; NIR describes spiking networks: convert it first "
            f"(rmpsnn convert --ann {opts.checkpoint}), or export its weights with --format safetensors"
        )
    from ..export import to_nir

    shape = input_shape_of(info, opts.input_shape)
    out = out if out.suffix.lower() == ".nir" else out / "model.nir"
    data = info.get("data") or {}
    was = f" (trained on {list(data['input_shape'])})" if data.get("input_shape") else ""
    what = f"--input-shape: model {info['model']!r}{was}"  # one line when it cannot take that shape
    probe_model(model, list(shape), time_major=bool(data.get("time_major", False)), what=what)
    sample = sample_input(model, info, shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the graph takes normalised inputs: say how, for whoever feeds it
    norm = {f"input_{k}": [float(v) for v in info[k]] for k in ("mean", "std") if info.get(k) is not None}
    to_nir(model, sample, out, allow_lossy_reset=opts.allow_lossy_reset, target=opts.target, metadata=norm)
    steps, target = getattr(model, "timesteps", "?"), f", for {opts.target}" if opts.target else ""
    log(f"wrote {out} (input {list(shape)} per step, {steps} steps{target})")
    return [str(out)]
