"""rmpsnn: spiking neural networks that are accurate at very few timesteps."""

__version__ = "0.1.0"

# Sub-modules load on first use (PEP 562), so that `rmpsnn --help` does not pay for torch.
_SUBMODULES = (
    "analysis",
    "checkpoint",
    "conversion",
    "data",
    "devices",
    "errors",
    "evaluation",
    "export",
    "functional",
    "layers",
    "losses",
    "models",
    "neurons",
    "surrogate",
    "training",
)
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rmpsnn' has no attribute {name!r}")
