"""rmpsnn: spiking neural networks that are accurate at very few timesteps."""

__version__ = "0.1.0"

from . import data, errors, functional, layers, losses, neurons, surrogate

__all__ = ["__version__", "data", "errors", "functional", "layers", "losses", "neurons", "surrogate"]
