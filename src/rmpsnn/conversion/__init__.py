"""ANN -> SNN conversion with RMP (soft-reset) IF neurons: BN folding, threshold balancing,
residual networks, direct or Poisson input, and accuracy over time from one simulation.

    from rmpsnn.conversion import convert, evaluate_over_time
    snn = convert(ann, calibration_images, reset="soft", balance="spike-max")
    result = evaluate_over_time(snn, (test_images, test_labels), timesteps=[1, 2, 4, ..., 1024])
"""

from .convert import BALANCE_METHODS, ConvertedSNN, convert, evaluate_ann, evaluate_over_time, first_within
from .graph import ConversionError, build_snn_graph
from .nodes import IFNode

__all__ = [
    "BALANCE_METHODS",
    "ConversionError",
    "ConvertedSNN",
    "IFNode",
    "build_snn_graph",
    "convert",
    "evaluate_ann",
    "evaluate_over_time",
    "first_within",
]
