"""Quantization: int8 QDQ graphs from calibration data (``quantize``), presets ``int8``."""

from graphopt.passes.quantize import quantize_pass
from graphopt.passes.quantize.quantize_pass import QuantizePass

__all__ = ["QuantizePass", "quantize_pass"]
