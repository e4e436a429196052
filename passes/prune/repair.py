"""Repair after pruning, without training.

**Least-squares reconstruction** (He et al. 2017, ThiNet): a layer that lost input channels
is refitted so that its output on calibration data stays what it was. With ``x`` its full input
patch (im2col row of a Conv, feature row of a Gemm / MatMul), ``W`` its weights and ``k`` the
kept features, the new weights and bias solve

    min  E || [x_k, 1] theta - x W^T ||^2   =>   theta = (E[z z^T])^-1 E[z x^T] W^T,  z = [x_k, 1]

All expectations are sub-blocks of one Gram matrix of ``[x, 1]`` over calibration data,
streamed through the core observer once, before pruning (rows sampled per batch, so the cost
does not grow with the image size). A layer with more than :data:`MAX_LS_FEATURES` input
features gets only the mean part: its bias absorbs ``W_pruned E[x_pruned]``.

**BatchNormalization re-estimation**: a BatchNormalization downstream of a cut or repaired layer
has its mean and variance moved by the shift the pruning caused at its input, measured on the
calibration data in the original and the pruned model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir
from numpy.lib.stride_tricks import sliding_window_view

from graphopt.observe import ActivationTap, ChannelMoments, Gram
from graphopt.passes.prune.groups import Layer
from graphopt.passes.rewrite_utils import constant_array

__all__ = ["MAX_LS_FEATURES", "ROWS_PER_BATCH", "SinkStatistics", "collect_statistics",
           "refit", "batchnorm_input_moments", "recalibrate_batchnorms",
           "downstream_batchnorms"]

MAX_LS_FEATURES = 4608
"""Input features (channels x kernel taps) up to which a layer is refitted by least squares."""
ROWS_PER_BATCH = 2048
"""Patch rows sampled from each calibration batch per layer."""
_RIDGE = 1e-6
MAX_VARIANCE_CHANGE = 4.0
"""BatchNormalization re-estimation moves a variance by at most this factor either way."""


@dataclasses.dataclass
class SinkStatistics:
    """What the repair of one sink needs: the Gram of ``[x, 1]`` or only channel means."""

    gram: Gram | None
    moments: ChannelMoments

    def second_moments(self) -> tuple[np.ndarray, np.ndarray]:
        gram = self.gram
        return gram.xtx / gram.rows, gram.column_sums / gram.rows


def _conv_geometry(node: ir.Node, weight: np.ndarray):
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or \
            weight.ndim != 4:
        return None
    kernel = weight.shape[2:]
    strides = list(node.attributes.get_ints("strides", [1, 1]))
    dilations = list(node.attributes.get_ints("dilations", [1, 1]))
    pads = list(node.attributes.get_ints("pads", [0, 0, 0, 0]))
    return kernel, strides, dilations, pads


class _Rows:
    """Sampled input rows of one sink: im2col patches of a Conv, feature rows of a Gemm."""

    def __init__(self, layer: Layer, weight: np.ndarray, seed: int) -> None:
        self.geometry = _conv_geometry(layer.node, weight) if layer.node.op_type == "Conv" \
            else None
        self.conv = layer.node.op_type == "Conv"
        self.rng = np.random.default_rng(seed)

    def __call__(self, array: np.ndarray) -> np.ndarray:
        if not self.conv:
            rows = array.reshape(-1, array.shape[-1])
        else:
            (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = self.geometry
            padded = np.pad(array, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
            windows = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1),
                                          axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
            n, _, height, width = windows.shape[:4]
            total = n * height * width
            pick = self.rng.choice(total, size=min(total, ROWS_PER_BATCH), replace=False)
            b, rest = np.divmod(pick, height * width)
            i, j = np.divmod(rest, width)
            rows = windows[b, :, i, j].reshape(len(pick), -1)
            return rows
        if rows.shape[0] > ROWS_PER_BATCH:
            rows = rows[self.rng.choice(rows.shape[0], ROWS_PER_BATCH, replace=False)]
        return rows


def _features(layer: Layer, weight: np.ndarray) -> int:
    per_position = int(np.prod(weight.shape[2:])) if layer.node.op_type == "Conv" else 1
    return layer.atoms.size * per_position


def collect_statistics(model: ir.Model, sinks: Iterable[Layer], data,
                       seed: int = 0) -> dict[int, SinkStatistics]:
    """One streamed pass over ``data``: the statistics of every sink's input (by id(node))."""
    observers: dict[str, list] = {}
    stats: dict[int, SinkStatistics] = {}
    for layer in sinks:
        weight = constant_array(layer.node.inputs[1])
        name = layer.value.name
        moments = ChannelMoments(axis=1 if layer.node.op_type == "Conv" else -1)
        gram = None
        lsq = _features(layer, weight) <= MAX_LS_FEATURES and (
            layer.node.op_type != "Conv" or _conv_geometry(layer.node, weight) is not None)
        if lsq:
            gram = Gram(_Rows(layer, weight, seed + len(stats)))
        stats[id(layer.node)] = SinkStatistics(gram, moments)
        observers.setdefault(name, []).extend([o for o in (gram, moments) if o is not None])
    if observers:
        with ActivationTap(model, list(observers)) as tap:
            tap.stream(data, observers)
    return stats


def _as_rows(layer: Layer, weight: np.ndarray) -> np.ndarray:
    """The weights as [outputs, input features] (Conv: features = channel-major taps)."""
    if layer.node.op_type == "Conv":
        return weight.reshape(weight.shape[0], -1).astype(np.float64)
    return (weight if layer.weight_axis == 1 else weight.T).astype(np.float64)


def _from_rows(layer: Layer, rows: np.ndarray, weight: np.ndarray, kept: int) -> np.ndarray:
    if layer.node.op_type == "Conv":
        return rows.reshape(weight.shape[0], kept, *weight.shape[2:]).astype(weight.dtype)
    return (rows if layer.weight_axis == 1 else rows.T).astype(weight.dtype)


def _solve(gram: np.ndarray, means: np.ndarray, kept: np.ndarray, weight_rows: np.ndarray):
    """theta for z = [x_kept, 1] reproducing x W^T; returns (new weight rows, bias change)."""
    index = np.flatnonzero(kept)
    size = index.size + 1
    zz = np.empty((size, size))
    zz[:-1, :-1] = gram[np.ix_(index, index)]
    zz[:-1, -1] = zz[-1, :-1] = means[index]
    zz[-1, -1] = 1.0
    zx = np.vstack([gram[index], means[None, :]])
    ridge = _RIDGE * (np.trace(zz) / size + 1e-12)
    theta = np.linalg.solve(zz + ridge * np.eye(size), zx @ weight_rows.T).T
    return theta[:, :-1], theta[:, -1]


def refit(layer: Layer, stats: SinkStatistics, keep_in: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """New weights (sink axis cut to the kept inputs) and bias of a sink, or None if it lost
    no input. The bias has one entry per output (the layer's own, or zeros, plus the fit)."""
    if keep_in.all():
        return None
    node = layer.node
    weight = constant_array(node.inputs[1])
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    conv = layer.node.op_type == "Conv"
    outputs = weight.shape[0] if conv else weight.shape[layer.weight_axis ^ 1]
    bias = constant_array(bias_value).astype(np.float64).reshape(-1) if bias_value is not None \
        else np.zeros(outputs)
    if bias.size == 1:
        bias = np.full(outputs, float(bias[0]))
    rows = _as_rows(layer, weight)
    groups = layer.groups
    per_group_in = layer.atoms.size // groups
    taps = rows.shape[1] // per_group_in
    per_group_out = rows.shape[0] // groups
    kept_per_group = int(keep_in[:per_group_in].sum())
    new_rows = np.empty((rows.shape[0], kept_per_group * taps))
    delta = np.zeros(rows.shape[0])
    for g in range(groups):
        out = slice(g * per_group_out, (g + 1) * per_group_out)
        channels = slice(g * per_group_in, (g + 1) * per_group_in)
        keep_features = np.repeat(keep_in[channels], taps)
        if stats.gram is not None:
            gram, means = stats.second_moments()
            features = np.arange(g * per_group_in * taps, (g + 1) * per_group_in * taps)
            sub_gram = gram[np.ix_(features, features)]
            new_rows[out], delta[out] = _solve(sub_gram, means[features], keep_features,
                                               rows[out])
        else:
            channel_means = stats.moments.mean.reshape(-1)[channels]
            feature_means = np.repeat(channel_means, taps)
            dropped = ~keep_features
            delta[out] = rows[out][:, dropped] @ feature_means[dropped]
            new_rows[out] = rows[out][:, keep_features]
    new_weight = _from_rows(layer, new_rows, weight, kept_per_group)
    return new_weight, (bias + delta).astype(weight.dtype)


def downstream_batchnorms(model: ir.Model, changed: Iterable[ir.Node]) -> list[ir.Node]:
    """BatchNormalization nodes whose input depends on any node in ``changed``."""
    seen: set[int] = set()
    stack = list(changed)
    found = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "BatchNormalization" and node not in changed:
            found.append(node)
        for value in node.outputs:
            stack.extend(use.node for use in value.uses())
    order = {id(n): i for i, n in enumerate(model.graph)}
    return sorted(found, key=lambda n: order.get(id(n), 0))


def batchnorm_input_moments(model: ir.Model, nodes: Iterable[ir.Node], data
                            ) -> dict[str, ChannelMoments]:
    """Mean and variance per channel of each BatchNormalization's input on ``data`` (by the
    node's name)."""
    nodes = list(nodes)
    if not nodes:
        return {}
    observers = {n.inputs[0].name: [ChannelMoments(axis=1)] for n in nodes}
    with ActivationTap(model, list(observers)) as tap:
        tap.stream(data, observers)
    return {n.name: observers[n.inputs[0].name][0] for n in nodes}


def recalibrate_batchnorms(model: ir.Model, nodes: list[ir.Node], data,
                           original: Mapping[str, ChannelMoments],
                           kept: Mapping[str, np.ndarray], set_input) -> int:
    """Move each BatchNormalization's statistics by the shift pruning caused at its input:
    ``mean += E_pruned[x] - E_original[x]``, ``var *= Var_pruned[x] / Var_original[x]``, both
    measured on ``data`` (so the correction does not depend on how well ``data`` matches the
    statistics the model was trained with), one node at a time in graph order (one pass over
    ``data`` each), so that no shift is corrected twice. ``kept`` is each node's kept-channel mask;
    ``set_input(node, index, array, hint)`` writes a constant."""
    nodes = [n for n in nodes if n.name in original]
    for node in nodes:  # in graph order: each sees its upstream ones corrected
        before = original[node.name]
        after = batchnorm_input_moments(model, [node], data)[node.name]
        mask = kept[node.name]
        mean = constant_array(node.inputs[3]).astype(np.float64)
        var = constant_array(node.inputs[4]).astype(np.float64)
        shift = after.mean - before.mean[mask]
        ratio = np.where(before.variance[mask] > 0,
                         after.variance / np.maximum(before.variance[mask], 1e-30), 1.0)
        ratio = np.clip(ratio, 1.0 / MAX_VARIANCE_CHANGE, MAX_VARIANCE_CHANGE)
        dtype = constant_array(node.inputs[3]).dtype
        set_input(node, 3, (mean + shift).astype(dtype), f"{node.name}_mean")
        set_input(node, 4, (var * ratio).astype(dtype), f"{node.name}_var")
    return len(nodes)
