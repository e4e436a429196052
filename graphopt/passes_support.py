"""Helpers shared by the core and the passes for handing a graph to onnx's C++ tools."""

from __future__ import annotations

import onnx
import onnx_ir as ir

__all__ = ["weightless_proto", "PLACEHOLDER_MIN_BYTES"]

# Initializers at least this large travel as unread external-data stand-ins.
PLACEHOLDER_MIN_BYTES = 1024
_PLACEHOLDER_LOCATION = "graphopt-placeholder-never-read"


def weightless_proto(model: ir.Model) -> onnx.ModelProto:
    """The model as a ModelProto whose large initializers are external stand-ins (never read).

    The IR model is left exactly as it was; the proto is for tools that only look at the graph
    (shape inference, the version converter), never for running or saving.
    """
    originals: dict[str, ir.TensorProtocol] = {}
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None or tensor.nbytes < PLACEHOLDER_MIN_BYTES:
            continue
        originals[name] = tensor
        value.const_value = ir.ExternalTensor(
            _PLACEHOLDER_LOCATION, offset=0, length=tensor.nbytes, dtype=tensor.dtype,
            shape=tensor.shape, name=name,
        )
    try:
        return ir.to_proto(model)
    finally:
        for name, tensor in originals.items():
            model.graph.initializers[name].const_value = tensor
