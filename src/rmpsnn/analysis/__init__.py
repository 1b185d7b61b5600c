"""Analysis: plots of results (more in later releases: membrane monitors, energy, reports)."""

from .plots import plot_accuracy_vs_timesteps

__all__ = ["plot_accuracy_vs_timesteps"]
