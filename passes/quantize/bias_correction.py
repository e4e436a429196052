"""Bias correction of weight quantization error (Nagel et al. 2019, "Data-free quantization",
section 4.2, with the input means measured on calibration data).

Quantizing a weight adds an error ``E = W_q - W``. Its effect on a layer's output has a
systematic part, ``E @ E[x]``: per output channel, the error summed against the mean of the
input. After a ReLU inputs have large positive means, and in networks whose BatchNorm folding
left large weights and biases that cancel, that shift can dwarf the layer's own output spread.
Subtracting it from the bias removes it exactly in expectation; the remaining error has zero
mean. For a Conv the input mean is taken per channel over all positions (zero padding at the
borders is ignored), for Gemm/MatMul per input feature.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphopt.passes.quantize.qparams import quantize_weight
from graphopt.passes.rewrite_utils import set_constant_input

__all__ = ["output_shift", "correct_bias", "input_mean_axis"]


def input_mean_axis(node: ir.Node) -> int:
    """The axis of the layer's input whose per-index means the correction needs."""
    return 1 if node.op_type == "Conv" else -1


def _dequantized(weight: np.ndarray, axis: int) -> np.ndarray:
    q, scales = quantize_weight(weight, axis)
    shape = [1] * weight.ndim
    shape[axis] = -1
    return q.astype(np.float64) * scales.astype(np.float64).reshape(shape)


def output_shift(node: ir.Node, axis: int, mean: np.ndarray) -> np.ndarray | None:
    """``E @ E[x]`` per output channel, or None when the shapes do not line up."""
    weight = node.inputs[1].const_value.numpy().astype(np.float64)
    error = _dequantized(weight, axis) - weight
    mean = np.asarray(mean, np.float64).ravel()
    if node.op_type == "Conv":
        groups = node.attributes.get_int("group", 1)
        out_channels, per_group = weight.shape[0], weight.shape[1]
        if mean.size != groups * per_group or out_channels % groups:
            return None
        summed = error.reshape(out_channels, per_group, -1).sum(axis=2)
        group_of = np.arange(out_channels) // (out_channels // groups)
        return np.einsum("oc,oc->o", summed, mean.reshape(groups, per_group)[group_of])
    rows_are_outputs = node.op_type == "Gemm" and node.attributes.get_int("transB", 0)
    matrix = error if rows_are_outputs else error.T  # [outputs, inputs]
    if matrix.shape[1] != mean.size:
        return None
    return matrix @ mean


def correct_bias(node: ir.Node, axis: int, mean: np.ndarray) -> bool:
    """Subtract :func:`output_shift` from the layer's bias (adding a bias if it has none);
    False when the layer cannot take a per-channel bias."""
    shift = output_shift(node, axis, mean)
    if shift is None:
        return False
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    if has_bias:
        bias = node.inputs[2].const_value
        if bias is None or bias.numpy().ndim != 1 or bias.numpy().size != shift.size:
            return False
        if node.op_type == "Gemm" and node.attributes.get_float("beta", 1.0) != 1.0:
            return False
        base = bias.numpy().astype(np.float64)
    elif node.op_type in ("Conv", "Gemm"):
        base = np.zeros(shift.size)
    else:
        return False  # a MatMul has no bias input
    hint = f"{node.name or node.op_type}_bias_corrected"
    set_constant_input(node, 2, (base - shift).astype(np.float32), hint)
    return True
