"""Materialise the onnx wheel's "light" model-zoo graphs with realistic random weights.

The light graphs keep the real architectures but replace each weight by a ``ConstantOfShape``
fill. Here every fill becomes an initializer drawn by its role (He-scaled conv and fc weights,
small biases, BN scales near 1), then every normaliser (BatchNormalization, or the Mul+Add pair
that follows it) is calibrated on random images so that activations keep unit scale through the
network, and the logits are scaled to a spread where softmax is informative but not saturated.
Weights that the light files ship as real tensors are kept. Everything is seeded by the name.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper, shape_inference

from graphopt.observe import ActivationTap, ChannelMoments

__all__ = ["LIGHT_MODELS", "light_model_path", "materialise"]

logger = logging.getLogger(__name__)

LIGHT_MODELS = (
    "resnet50",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "bvlc_alexnet",
    "zfnet512",
)
TARGET_LOGIT_STD = 2.0
_STAT_DIGITS = 4  # significant digits kept of calibrated statistics (machine-independent)
_PASS_THROUGH = {"Reshape", "Flatten", "GlobalAveragePool", "AveragePool", "Relu", "Dropout",
                 "Identity", "Softmax", "Squeeze", "Unsqueeze"}


def light_model_path(name: str) -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            uses[name].append((node, index))
    return uses


def _role(name: str, uses, depth: int = 0) -> tuple[str, int]:
    """(consumer op, input index) of a weight, looking through Unsqueeze/Reshape wrappers."""
    for node, index in uses.get(name, []):
        if node.op_type in ("Unsqueeze", "Reshape", "Squeeze") and index == 0 and depth < 3:
            return _role(node.output[0], uses, depth + 1)
        return node.op_type, index
    return "", -1


def _draw(shape: list[int], role: tuple[str, int], rng: np.random.Generator,
          gemm_trans_b: bool) -> np.ndarray:
    op, index = role
    size = int(np.prod(shape)) if shape else 1
    if op in ("Conv", "ConvTranspose") and index == 1:
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    if op == "Gemm" and index == 1:
        fan_in = shape[1] if gemm_trans_b else shape[0]
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    if op == "BatchNormalization":
        return {
            1: lambda: rng.uniform(0.7, 1.3, size=shape),  # scale
            2: lambda: rng.normal(0.0, 0.1, size=shape),  # bias
            3: lambda: np.zeros(shape),  # mean: calibrated later
            4: lambda: np.ones(shape),  # variance: calibrated later
        }.get(index, lambda: rng.normal(0.0, 0.1, size=shape))()
    if op == "Mul":
        return rng.uniform(0.8, 1.2, size=shape)
    if op in ("Add", "Sum", "Sub"):
        return rng.normal(0.0, 0.05, size=shape)
    if op in ("Conv", "Gemm", "ConvTranspose") and index == 2:
        return rng.normal(0.0, 0.01, size=shape)
    logger.debug("weight of unknown role %s: small normal, %d elements", role, size)
    return rng.normal(0.0, 0.1, size=shape)


def _fill_weights(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses = _consumers(graph)
    keep_nodes = []
    for node in graph.node:
        shape_name = node.input[0] if node.op_type == "ConstantOfShape" else None
        if shape_name not in initializers:
            keep_nodes.append(node)
            continue
        shape = [int(d) for d in numpy_helper.to_array(initializers[shape_name])]
        role = _role(node.output[0], uses)
        trans_b = any(
            a.name == "transB" and a.i for n, _ in uses[node.output[0]] for a in n.attribute
        )
        array = _draw(shape, role, rng, trans_b).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {name for node in graph.node for name in node.input}
    shapes = [t for t in graph.initializer if t.name.endswith("__SHAPE") and t.name not in used]
    for tensor in shapes:
        graph.initializer.remove(tensor)
    listed = {t.name for t in shapes}
    for value in [v for v in graph.input if v.name in listed]:
        graph.input.remove(value)
    # IR version 3 (as in the original zoo files) lists every initializer as a graph input.
    inputs = {v.name for v in graph.input}
    for tensor in graph.initializer:
        if tensor.name not in inputs:
            graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )


def _normalisers(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "BatchNormalization"]


def _levels(graph: onnx.GraphProto, targets: list[onnx.NodeProto]) -> list[list[onnx.NodeProto]]:
    """Group normalisers so that each group only depends on normalisers of earlier groups."""
    target_ids = {id(n) for n in targets}
    depth_of_value: dict[str, int] = defaultdict(int)
    grouped: dict[int, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:  # the light graphs are topologically sorted
        depth = max((depth_of_value[name] for name in node.input), default=0)
        if id(node) in target_ids:
            grouped[depth].append(node)
            depth += 1
        for name in node.output:
            depth_of_value[name] = depth
    return [grouped[d] for d in sorted(grouped)]


def _tap(model: onnx.ModelProto, outputs: list[str]) -> ActivationTap:
    """The core activation observer over a proto model, exposing ``outputs``."""
    return ActivationTap(ir.from_proto(model), outputs)


def _round(array: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.{_STAT_DIGITS}g}") for v in array.ravel()],
                    dtype=np.float32).reshape(array.shape)


def _statistics_as_inputs(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy where the named initializers are graph inputs, fed anew on every run."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    kept = [t for t in probe.graph.initializer if t.name not in names]
    moved = [t for t in probe.graph.initializer if t.name in names]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    listed = {v.name for v in probe.graph.input}
    for tensor in moved:
        if tensor.name not in listed:
            probe.graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return probe


def _calibrate_normalisers(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> None:
    """Set each BatchNormalization's mean/variance to the statistics of its actual input.

    One session serves every level: the statistics are inputs of the probe model, so a level's
    run sees the already calibrated statistics of all earlier levels.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    normalisers = _normalisers(graph)
    if not normalisers:
        return
    stat_names = {node.input[i] for node in normalisers for i in (3, 4)}
    stats = {name: numpy_helper.to_array(initializers[name]) for name in stat_names}
    activations = [node.input[0] for node in normalisers]
    with _tap(_statistics_as_inputs(model, stat_names), activations) as tap:
        for level in _levels(graph, normalisers):
            moments = {node.input[0]: [ChannelMoments(axis=1)] for node in level}
            tap.stream([{**feed, **stats}], moments)
            for node in level:
                (observed,) = moments[node.input[0]]
                stats[node.input[3]] = _round(observed.mean)
                stats[node.input[4]] = _round(observed.variance + 1e-3)
    for name, array in stats.items():
        initializers[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def _logit_producer(graph: onnx.GraphProto, output: str) -> onnx.NodeProto | None:
    producers = {name: node for node in graph.node for name in node.output}
    node = producers.get(output)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is not None and node.op_type in ("Gemm", "Conv"):
        return node
    return None


def _scale_logits(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> None:
    """Scale the last linear layer so its outputs have a standard deviation of TARGET_LOGIT_STD."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    for output in graph.output:
        producer = _logit_producer(graph, output.name)
        if producer is None:
            continue
        with _tap(model, [producer.output[0]]) as tap:
            logits = tap.run(feed)[producer.output[0]]
        std = float(np.std(logits))
        if not np.isfinite(std) or std == 0:
            continue
        factor = TARGET_LOGIT_STD / std
        for name in producer.input[1:]:
            if name in initializers:
                tensor = initializers[name]
                scaled = numpy_helper.to_array(tensor) * np.float32(factor)
                tensor.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), name))


def _calibration_feed(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    initializers = {t.name for t in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        feed[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def materialise(name: str) -> onnx.ModelProto:
    """The light model ``name`` with deterministic, calibrated random weights."""
    if name not in LIGHT_MODELS:
        raise KeyError(name)
    model = onnx.load(light_model_path(name))
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    _fill_weights(model, rng)
    # Keep the inferred value_info, as exporters write it: tools then know every shape.
    model = shape_inference.infer_shapes(model)
    # The light graphs hard-code batch 1 in their Reshapes: calibrate on one image (per-channel
    # statistics still pool over every spatial position).
    feed = _calibration_feed(model, rng)
    _calibrate_normalisers(model, feed)
    _scale_logits(model, feed)
    model.producer_name = "graphopt.zoo"
    model.doc_string = (
        f"onnx light_{name} with deterministic random weights calibrated by graphopt.zoo"
    )
    return model
