"""ANN -> SNN conversion with RMP (soft-reset) IF neurons: BN folding, threshold balancing,
post-conversion calibration, residual networks, direct or Poisson input, and accuracy over time
from one simulation.

    from rmpsnn.conversion import convert, evaluate_over_time
    snn = convert(ann, calibration_images)                      # best at few steps (calibrated)
    rmp = convert(ann, calibration_images, balance="spike-max", calibrate="none")   # RMP-SNN
    result = evaluate_over_time(snn, (test_images, test_labels), timesteps=[1, 2, 4, ..., 1024])
"""

from .balancing import BALANCERS, BalanceContext, available_balancers, register_balancer
from .calibrate import CALIBRATIONS, available_calibrations, calibrate
from .convert import ConvertedSNN, convert, evaluate_ann, evaluate_over_time, first_within
from .graph import build_snn_graph
from .nodes import IFNode
from .pooling import SpikingMaxPool
from .simulate import encode_input, simulate, simulate_layer

__all__ = [
    "BALANCERS",
    "CALIBRATIONS",
    "BalanceContext",
    "ConvertedSNN",
    "IFNode",
    "SpikingMaxPool",
    "available_balancers",
    "available_calibrations",
    "build_snn_graph",
    "calibrate",
    "convert",
    "encode_input",
    "evaluate_ann",
    "evaluate_over_time",
    "first_within",
    "register_balancer",
    "simulate",
    "simulate_layer",
]
