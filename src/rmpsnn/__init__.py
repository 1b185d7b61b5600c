"""rmpsnn: spiking neural networks that are accurate at very few timesteps."""

__version__ = "0.1.0"

from . import data, functional, layers, losses, neurons, surrogate

__all__ = ["__version__", "data", "functional", "layers", "losses", "neurons", "surrogate"]
