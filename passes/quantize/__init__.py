"""Quantization: int8 QDQ graphs from calibration data (``quantize``, preset ``int8``) and
weight-only int8 (``quantize_weights``, preset ``int8-weights``)."""

from graphopt.passes.quantize import quantize_pass, weights_only
from graphopt.passes.quantize.quantize_pass import QuantizePass
from graphopt.passes.quantize.weights_only import QuantizeWeightsPass

__all__ = ["QuantizePass", "QuantizeWeightsPass", "quantize_pass", "weights_only"]
