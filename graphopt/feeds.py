"""Feeds: ``{input_name: array}`` for a model's data inputs, checked or generated.

The lowest layer of model data: :func:`check_feed` turns any mismatch between a feed and the
model's inputs (names, dtype, rank, static dims) into one readable ``GraphoptError``, and
:func:`random_inputs` makes seeded feeds for models without data. Verification, calibration
and the backends all build on these two.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from graphopt.errors import GraphoptError

__all__ = [
    "DEFAULT_DYNAMIC_DIM",
    "MAX_RANDOM_INPUT_BYTES",
    "model_inputs",
    "static_batch_size",
    "check_feed",
    "random_inputs",
    "concrete_dims",
]

DEFAULT_DYNAMIC_DIM = 1
_SPATIAL_DEFAULT = 32
MAX_RANDOM_INPUT_BYTES = 1 << 30
"""Random inputs larger than this (1 GiB per input) are refused: give data instead."""

_NUMPY_DTYPES = {
    ir.DataType.FLOAT: np.float32,
    ir.DataType.DOUBLE: np.float64,
    ir.DataType.FLOAT16: np.float16,
    ir.DataType.INT64: np.int64,
    ir.DataType.INT32: np.int32,
    ir.DataType.INT8: np.int8,
    ir.DataType.UINT8: np.uint8,
    ir.DataType.BOOL: np.bool_,
}


def model_inputs(model: ir.Model) -> list[ir.Value]:
    """The graph inputs that are data (not initializers listed as inputs)."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


def static_batch_size(model: ir.Model) -> int | None:
    """The fixed size of the inputs' leading axis, or ``None`` when it is dynamic."""
    for value in model_inputs(model):
        if value.shape is not None and len(value.shape) > 0:
            first = value.shape[0]
            return first if isinstance(first, int) else None
    return None


def check_feed(
    model: ir.Model, feed: Mapping[str, np.ndarray], *, where: str = "input data"
) -> None:
    """Raise a one-line error when ``feed`` does not fit the model's inputs."""
    expected = {v.name: v for v in model_inputs(model)}
    missing = sorted(set(expected) - set(feed))
    extra = sorted(set(feed) - set(expected))
    if missing or extra:
        raise GraphoptError(
            f"{where} does not match the model: missing {missing}, unexpected {extra}"
            f" (model inputs: {sorted(expected)})"
        )
    for name, value in expected.items():
        array = feed[name]
        dims = _dims_text(value.shape)
        if value.dtype is not None and array.dtype != value.dtype.numpy():
            raise GraphoptError(
                f"{where}: input {name!r} has dtype {array.dtype}, the model expects"
                f" {value.dtype.numpy()}"
            )
        if value.shape is None:
            continue
        if array.ndim != len(value.shape):
            raise GraphoptError(
                f"{where}: input {name!r} has shape {list(array.shape)}, the model expects rank"
                f" {len(value.shape)} {dims}"
            )
        for axis, (dim, size) in enumerate(zip(value.shape, array.shape, strict=True)):
            if isinstance(dim, int) and dim != size:
                raise GraphoptError(
                    f"{where}: input {name!r} has size {size} on axis {axis}, the model expects"
                    f" {dim} (shape {dims})"
                )


def _dims_text(shape: ir.Shape | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def concrete_dims(shape: ir.Shape, batch_size: int = 1) -> tuple[int, ...]:
    """The dims random data of an input of ``shape`` gets: static dims as they are, a dynamic
    axis 0 ``batch_size``, dynamic spatial axes (2 and up) 32, others 1."""
    return tuple(
        dim if isinstance(dim, int)
        else batch_size if axis == 0
        else _SPATIAL_DEFAULT if axis >= 2 else DEFAULT_DYNAMIC_DIM
        for axis, dim in enumerate(shape))


def _concrete_shape(value: ir.Value, batch_size: int, itemsize: int) -> tuple[int, ...]:
    if value.shape is None:
        raise GraphoptError(f"input {value.name!r} has no shape: pass input data explicitly")
    for axis, dim in enumerate(value.shape):
        if isinstance(dim, int) and dim <= 0:
            raise GraphoptError(
                f"input {value.name!r} has size {dim} on axis {axis}"
                f" {_dims_text(value.shape)}: random inputs would be "
                + ("empty; give input data (--inputs)" if dim == 0 else "impossible")
            )
    dims = concrete_dims(value.shape, batch_size)
    size = itemsize
    for dim in dims:
        size *= dim
    if size > MAX_RANDOM_INPUT_BYTES:
        raise GraphoptError(
            f"input {value.name!r} of shape {dims} needs {size / 2**30:.3g} GiB of random data"
            f" (limit {MAX_RANDOM_INPUT_BYTES / 2**30:g} GiB); give input data (--inputs)"
        )
    return tuple(dims)


def random_inputs(
    model: ir.Model, *, seed: int = 0, batch_size: int = 1
) -> dict[str, np.ndarray]:
    """Deterministic inputs for every graph input that is not an initializer.

    Float inputs are standard normal (the range of normalised images and embeddings), integer
    inputs uniform in [0, 10), booleans fair coins. Dynamic dims: batch -> ``batch_size``.
    """
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for value in model_inputs(model):
        dtype = value.dtype
        if dtype not in _NUMPY_DTYPES:
            raise GraphoptError(f"input {value.name!r}: cannot generate data of type {dtype}")
        np_dtype = _NUMPY_DTYPES[dtype]
        shape = _concrete_shape(value, batch_size, np.dtype(np_dtype).itemsize)
        if np.issubdtype(np_dtype, np.floating):
            array = rng.standard_normal(shape).astype(np_dtype)
        elif np_dtype is np.bool_:
            array = rng.random(shape) < 0.5
        else:
            array = rng.integers(0, 10, size=shape).astype(np_dtype)
        inputs[value.name] = array
    return inputs
