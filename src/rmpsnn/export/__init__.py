"""Export: NIR graphs (:func:`to_nir` / :func:`from_nir`) and pickle-free weights
(:func:`export_safetensors` / :func:`load_exported`)."""

from .nir import NIRNetwork, from_nir, to_nir
from .weights import export_safetensors, load_exported

__all__ = ["NIRNetwork", "export_safetensors", "from_nir", "load_exported", "to_nir"]
