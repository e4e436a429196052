"""Quantization parameters: integer types, scales and zero points, quantized weights and biases.

Affine quantization maps a real ``x`` to ``q = clip(round(x / scale) + zero_point, qmin, qmax)``
and back to ``(q - zero_point) * scale``. The range always contains 0, so that 0 (padding,
ReLU's floor) is exact.

- Activations, per tensor: asymmetric ``scale = (high - low) / (qmax - qmin)``, ``zero_point =
  round(qmin - low / scale)``; symmetric ``scale = max(|low|, |high|) / (levels / 2 - 1/2)``
  around the type's centre (0 for int8, 128 for uint8).
- Weights, per output channel, symmetric int8 over ``[-127, 127]`` (zero point 0): the
  restricted range keeps ``-q`` representable, which VNNI's u8 x s8 kernels rely on.
- Bias, int32 per output channel with ``scale = activation scale x weight scale[c]`` and zero
  point 0: what ORT's QLinearConv, OpenVINO and TensorRT read.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import onnx_ir as ir

__all__ = [
    "INT4_QMAX",
    "quantize_weight_blocked",
    "QuantType",
    "UINT8",
    "INT8",
    "QUANT_TYPES",
    "ActivationParams",
    "activation_params",
    "quantize_weight",
    "quantize_bias",
    "fake_quantize",
]

_WEIGHT_QMAX = 127


@dataclasses.dataclass(frozen=True)
class QuantType:
    name: str
    numpy: type
    qmin: int
    qmax: int
    ir_type: ir.DataType

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin + 1


UINT8 = QuantType("uint8", np.uint8, 0, 255, ir.DataType.UINT8)
INT8 = QuantType("int8", np.int8, -128, 127, ir.DataType.INT8)
QUANT_TYPES = {"uint8": UINT8, "int8": INT8}


@dataclasses.dataclass(frozen=True)
class ActivationParams:
    """Per-tensor parameters of one activation."""

    scale: float
    zero_point: int
    qtype: QuantType
    low: float
    high: float

    @property
    def floor(self) -> float:
        """The smallest representable value (0 when the zero point is the type's minimum)."""
        return (self.qtype.qmin - self.zero_point) * self.scale


def activation_params(low: float, high: float, qtype: QuantType, *,
                      symmetric: bool = False) -> ActivationParams:
    """Scale and zero point covering ``[low, high]`` (widened to contain 0)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if symmetric:
        bound = max(-low, high)
        scale = bound / ((qtype.levels - 1) / 2) if bound > 0 else 1.0
        zero_point = (qtype.qmin + qtype.qmax + 1) // 2
    else:
        span = high - low
        scale = span / (qtype.qmax - qtype.qmin) if span > 0 else 1.0
        zero_point = int(np.clip(round(qtype.qmin - low / scale), qtype.qmin, qtype.qmax))
    scale = float(np.float32(scale))
    return ActivationParams(scale, zero_point, qtype, low, high)


def quantize_weight(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scales): symmetric, per channel along ``axis`` or per tensor."""
    w = np.asarray(weight, dtype=np.float64)
    if axis is None:
        bound = np.max(np.abs(w)) if w.size else 0.0
        scales = np.array(bound / _WEIGHT_QMAX if bound > 0 else 1.0)
        shaped = scales
    else:
        axes = tuple(a for a in range(w.ndim) if a != axis)
        bound = np.max(np.abs(w), axis=axes)
        scales = np.where(bound > 0, bound / _WEIGHT_QMAX, 1.0)
        shape = [1] * w.ndim
        shape[axis] = -1
        shaped = scales.reshape(shape)
    scales = scales.astype(np.float32)
    q = np.clip(np.round(w / shaped.astype(np.float32)), -_WEIGHT_QMAX, _WEIGHT_QMAX)
    return q.astype(np.int8), scales


INT4_QMAX = 7
"""Symmetric int4 weights use [-7, 7] (the grid stays symmetric; -8 is left out)."""


def quantize_weight_blocked(weight: np.ndarray, axis: int,
                            block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(int4 weight, float32 scales): symmetric, one scale per ``block_size`` consecutive
    entries along ``axis`` (which must divide into whole blocks) and per position elsewhere;
    the scales have the weight's shape with ``axis`` divided by ``block_size`` (opset 21)."""
    w = np.asarray(weight, dtype=np.float64)
    moved = np.moveaxis(w, axis, 0)
    blocks = moved.reshape(moved.shape[0] // block_size, block_size, *moved.shape[1:])
    bound = np.max(np.abs(blocks), axis=1)
    scales = np.where(bound > 0, bound / INT4_QMAX, 1.0).astype(np.float32)
    q = np.clip(np.round(blocks / scales[:, None].astype(np.float64)), -INT4_QMAX, INT4_QMAX)
    q = np.moveaxis(q.reshape(moved.shape), 0, axis)
    return q.astype(ml_dtypes.int4), np.moveaxis(scales, 0, axis)


def quantize_bias(bias: np.ndarray, input_scale: float,
                  weight_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 bias, float32 scales = input scale x weight scales)."""
    scales = (np.float32(input_scale) * np.asarray(weight_scales, np.float32)).astype(np.float32)
    scales = np.broadcast_to(scales, np.shape(bias)).astype(np.float32)
    q = np.round(np.asarray(bias, np.float64) / scales.astype(np.float64))
    info = np.iinfo(np.int32)
    return np.clip(q, info.min, info.max).astype(np.int32), scales


def fake_quantize(x: np.ndarray, params: ActivationParams) -> np.ndarray:
    """``x`` quantized and dequantized with ``params`` (what the QDQ pair computes)."""
    q = np.clip(np.round(x / params.scale) + params.zero_point, params.qtype.qmin,
                params.qtype.qmax)
    return ((q - params.zero_point) * params.scale).astype(np.float32)
