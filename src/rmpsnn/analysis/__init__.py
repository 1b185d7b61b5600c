"""Analysis: per-layer monitors (membrane histograms, firing rates, quantisation error),
operation counts and energy, and figures (the run reports of ``rmpsnn report`` are built from
them in :mod:`rmpsnn.app.report`)."""

from .energy import E_AC_PJ, E_MAC_PJ, OperationCounts, count_operations
from .monitors import LayerStats, collect_layer_stats
from .plots import (
    plot_accuracy_vs_timesteps,
    plot_firing_rates,
    plot_membrane_distribution,
    plot_training_curves,
)

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "LayerStats",
    "OperationCounts",
    "collect_layer_stats",
    "count_operations",
    "plot_accuracy_vs_timesteps",
    "plot_firing_rates",
    "plot_membrane_distribution",
    "plot_training_curves",
]
