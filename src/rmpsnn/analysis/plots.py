"""Figures of results (matplotlib, written as PNG and SVG, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_accuracy_vs_timesteps"]


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
            label = f"ANN of {', '.join(names)}: {100 * a:.1f} %"
            ax.axhline(100 * a, color=color_of.get(names[0], "black"), ls="--", lw=1, alpha=0.8, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # outside: never over a curve
    fig.tight_layout()
    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".svg"):
        fig.savefig(base.with_suffix(ext))
        out.append(base.with_suffix(ext))
    plt.close(fig)
    return out
