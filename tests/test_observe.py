"""The activation observer: intermediate tensors streamed into bounded statistics."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from graphopt import oracle
from graphopt.calibration import RandomData
from graphopt.errors import GraphoptError
from graphopt.model_io import resolve_model
from graphopt.observe import (
    ActivationTap,
    ChannelMoments,
    Gram,
    Histogram,
    MinMax,
    observe,
)


def _first_conv_output(model: ir.Model) -> str:
    return next(n for n in model.graph if n.op_type == "Conv").outputs[0].name


def test_streams_intermediate_values_batch_by_batch():
    model = resolve_model("zoo:tiny_cnn")
    name = _first_conv_output(model)
    outputs_before = [v.name for v in model.graph.outputs]
    source = RandomData(model, batches=5, batch_size=2, seed=1)
    minmax, moments = MinMax(axis=1), ChannelMoments(axis=1)
    assert observe(model, source, {name: [minmax, moments]}) == 5
    assert [v.name for v in model.graph.outputs] == outputs_before  # the model is unchanged
    # The same statistics from all samples at once, the tensor exposed by hand:
    with ActivationTap(model, [name]) as tap:
        full = np.concatenate([tap.run(feed)[name] for feed in source])
    np.testing.assert_allclose(minmax.min, full.min(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(minmax.max, full.max(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(moments.mean, full.mean(axis=(0, 2, 3), dtype=np.float64),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(moments.variance, full.var(axis=(0, 2, 3), dtype=np.float64),
                               rtol=1e-6)
    assert moments.count == full.size // full.shape[1]


def test_graph_inputs_and_outputs_can_be_tapped():
    model = resolve_model("zoo:mlp")
    feed = next(iter(RandomData(model, batches=1, batch_size=3)))
    output = model.graph.outputs[0].name
    with ActivationTap(model, ["input", output]) as tap:
        values = tap.run(feed)
    np.testing.assert_array_equal(values["input"], feed["input"])
    expected = oracle.run_model(oracle.make_session(model), feed)[output]
    np.testing.assert_array_equal(values[output], expected)


def test_unknown_value_is_one_line():
    with pytest.raises(GraphoptError, match=r"cannot observe \['nope'\]"):
        ActivationTap(resolve_model("zoo:mlp"), ["nope"])


def test_histogram_widening_merges_exactly():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=500), rng.normal(size=500) * 4 - 7, rng.normal(size=500) * 9 + 20]
    histogram = Histogram(bins=128)
    for part in parts:
        histogram.update(part)
    data = np.concatenate(parts)
    assert histogram.edges[0] <= data.min() and histogram.edges[-1] >= data.max()
    expected, _ = np.histogram(data, bins=histogram.edges)
    np.testing.assert_array_equal(histogram.counts, expected)
    assert histogram.total == data.size and histogram.counts.size == 128


def test_histogram_ignores_non_finite_and_constant_input():
    histogram = Histogram(bins=8)
    histogram.update(np.array([np.nan, np.inf, 2.0, 2.0]))
    assert histogram.total == 2 and histogram.low < 2.0 < histogram.high


def test_gram_sums_for_least_squares():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    gram = Gram()
    gram.update(x[:2])
    gram.update(x[2:])
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(gram.xtx, rows.T @ rows, rtol=1e-10)
    np.testing.assert_allclose(gram.column_sums, rows.sum(axis=0), rtol=1e-10)
    assert gram.rows == 100


def test_absolute_histogram_starts_at_zero_and_keeps_exact_extremes():
    histogram = Histogram(bins=64, absolute=True)
    histogram.update(np.array([-3.0, 0.5, 1.0]))
    histogram.update(np.array([7.0, -0.25]))
    assert histogram.low == 0.0 and histogram.high >= 7.0
    assert histogram.min == 0.25 and histogram.max == 7.0
    expected, _ = np.histogram([3.0, 0.5, 1.0, 7.0, 0.25], bins=histogram.edges)
    np.testing.assert_array_equal(histogram.counts, expected)
