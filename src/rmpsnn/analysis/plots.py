"""Figures of results (matplotlib, written as PNG and SVG, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write

__all__ = [
    "plot_accuracy_vs_timesteps",
    "plot_firing_rates",
    "plot_membrane_distribution",
    "plot_training_curves",
]


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_timesteps(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path: str | Path,
    *,
    ann_accuracy: float | Mapping[str, float] | None = None,
    title: str = "Converted SNN: accuracy vs timesteps",
) -> list[Path]:
    """Accuracy (%) against timesteps (log2 axis) for one or more converted SNNs, with the ANN's
    accuracy as a horizontal line (one per curve when a mapping is given).  Writes ``path`` with
    the suffixes ``.png`` and ``.svg``; returns the files written."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8.6, 4.2), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {}
    for i, (name, (ts, acc)) in enumerate(curves.items()):
        color_of[name] = colors[i % len(colors)]
        ax.plot(ts, [100 * a for a in acc], marker="o", ms=3.5, lw=1.6, color=color_of[name], label=name)
    if isinstance(ann_accuracy, (int, float)):
        ax.axhline(
            100 * ann_accuracy, color="black", ls="--", lw=1, label=f"ANN ({100 * ann_accuracy:.1f} %)"
        )
    elif isinstance(ann_accuracy, Mapping):
        # one dashed line per distinct ANN (curves converted from the same ANN share it)
        by_value: dict[float, list[str]] = {}
        for name, a in ann_accuracy.items():
            by_value.setdefault(round(float(a), 6), []).append(name)
        for a, names in by_value.items():
            who = ", ".join(names) if len(names) <= 2 else f"{names[0]} and {len(names) - 1} more"
            label = f"ANN of {who}: {100 * a:.1f} %"
            ax.axhline(100 * a, color=color_of.get(names[0], "black"), ls="--", lw=1, alpha=0.8, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # outside: never over a curve
    return _save(plt, fig, path)


def _save(plt, fig, path) -> list[Path]:
    fig.tight_layout()
    base = Path(path).with_suffix("")
    out = []
    try:
        for ext in (".png", ".svg"):  # atomically: a full disk keeps the previous figure
            atomic_write(base.with_suffix(ext), lambda tmp, fmt=ext[1:]: fig.savefig(tmp, format=fmt))
            out.append(base.with_suffix(ext))
    finally:
        plt.close(fig)
    return out


def plot_membrane_distribution(
    runs: Mapping[str, object],
    path: str | Path,
    *,
    layers: Sequence[str] | None = None,
    max_layers: int = 4,
    title: str = "Pre-spike membrane potential",
) -> list[Path]:
    """Distribution of the pre-spike membrane potential ``u`` of chosen layers (default: up to
    ``max_layers`` spread over the depth), one panel per layer, each run overlaid (e.g. with vs
    without RMP-Loss, RMP-Loss Fig. 2-3).  Marks the spike values 0 and 1 and the threshold.
    ``runs`` maps a label to :class:`~rmpsnn.analysis.LayerStats`."""
    plt = _figure()
    stats = list(runs.values())
    names = list(stats[0].layers)
    if layers is None:
        if len(names) > max_layers:
            step = (len(names) - 1) / (max_layers - 1)
            names = [names[round(i * step)] for i in range(max_layers)]
        layers = names
    missing = [n for n in layers if any(n not in s.layers for s in stats)]
    if missing:
        raise InputError(f"layers {missing} are not in every run; choose from {list(stats[0].layers)}")
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers) + 1.6, 3.4), dpi=120, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    v_th = stats[0].v_th
    for ax, layer in zip(axes[0], layers, strict=True):
        qs = []
        for i, (label, st) in enumerate(runs.items()):
            x, dens = st.density(layer)
            ax.plot(x, dens, drawstyle="steps-mid", lw=1.3, color=colors[i % len(colors)], label=label)
            qs.append(f"{label}: {st.layers[layer]['quantization_error']:.3f}")
        ax.text(
            0.98,
            0.97,
            "|Dis|\n" + "\n".join(qs),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8, "lw": 0.5},
        )
        marks = ((0.0, ":", "0"), (1.0, ":", "1")) + (((v_th, "--", "θ"),) if v_th is not None else ())
        for v, style, text in marks:
            ax.axvline(v, color="black", ls=style, lw=0.9)
            ax.text(v, 1.0, text, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
        ax.set_title(layer, fontsize=9, pad=12)
        ax.set_xlabel("membrane potential u")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("density")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    theta = f"threshold θ = {v_th:g}" if v_th is not None else "per-channel thresholds"
    fig.suptitle(f"{title} (spikes at 0 and 1, {theta})", fontsize=10)
    return _save(plt, fig, path)


def plot_firing_rates(
    runs: Mapping[str, object], path: str | Path, *, title: str = "Firing rate per layer"
) -> list[Path]:
    """Grouped bars: spikes per neuron per timestep of every spiking layer, one bar per run."""
    plt = _figure()
    stats = list(runs.values())
    layers = list(stats[0].layers)
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(layers) * len(runs) + 2.5), 3.6), dpi=120)
    for i, (label, st) in enumerate(runs.items()):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(layers))]
        ax.bar(xs, [st.layers[n]["firing_rate"] if n in st.layers else 0 for n in layers], width, label=label)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("spikes per neuron per timestep")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_training_curves(
    runs: Mapping[str, Sequence[Mapping]], path: str | Path, *, title: str = "Training"
) -> list[Path]:
    """Cross-entropy, RMP-Loss term, test accuracy and quantisation error against epoch for one or
    more runs (``runs`` maps a label to the records of a run's ``metrics.jsonl``)."""
    from matplotlib.ticker import MaxNLocator

    plt = _figure()
    panels = [
        ("ce", "training cross-entropy", 1),
        ("rmp", "RMP-Loss term (eq. 10)", 1),
        ("test_accuracy", "test accuracy (%)", 100),
        ("quantization_error", "quantization error |Dis|", 1),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        for i, (name, recs) in enumerate(runs.items()):
            pts = [(r["epoch"], r[key] * scale) for r in recs if r.get(key) is not None]
            if key == "rmp" and not any(v for _, v in pts):
                pts = []  # RMP-Loss was off in this run: no term to show
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    marker="o",
                    ms=3,
                    lw=1.4,
                    label=name,
                    color=colors[i % len(colors)],
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
    with_lines = [ax for ax in axes if ax.get_lines()]
    if with_lines:
        handles, labels = with_lines[0].get_legend_handles_labels()
        axes[-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
