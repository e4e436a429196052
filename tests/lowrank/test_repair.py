"""Least-squares repair: im2col rows agree with onnxruntime's Conv, and the refit last factor
reproduces the original layer's outputs better than the plain truncation."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank_testing import conv_model, run

from graphopt.calibration import ArrayData
from graphopt.pass_context import PassContext
from graphopt.passes.lowrank import LowRankPass
from graphopt.passes.lowrank.repair import conv_rows


@pytest.mark.parametrize("geometry", [
    {"kernel": (1, 1)},
    {"kernel": (1, 3), "strides": [1, 2], "pads": [0, 1, 0, 2], "dilations": [1, 2]},
    {"kernel": (3, 2), "strides": [2, 1], "pads": [1, 0, 2, 1]},
])
def test_conv_rows_times_the_weight_is_the_conv(geometry):
    kernel = geometry["kernel"]
    model = conv_model(5, 7, kernel, strides=geometry.get("strides"), pads=geometry.get("pads"),
                       dilations=geometry.get("dilations"), bias=False, size=(9, 10))
    x = np.random.default_rng(0).normal(size=(2, 5, 9, 10)).astype(np.float32)
    y = run(model, {"x": x})
    weight = next(iter(model.graph)).inputs[1].const_value.numpy()
    spatial = len(kernel)
    rows = conv_rows(x, kernel, geometry.get("strides", [1] * spatial),
                     geometry.get("dilations", [1] * spatial), geometry.get("pads", [0] * 4))
    expected = np.moveaxis(y, 1, -1).reshape(-1, 7)
    np.testing.assert_allclose(rows @ weight.reshape(7, -1).T, expected, rtol=1e-4, atol=1e-4)


def _net():
    return conv_model(8, 16, (3, 3), pads=[1, 1, 1, 1], size=(10, 10), batch=4, seed=1)


def _data(seed, batches=6):
    """Inputs whose 8 channels mix 2 sources (correlated, as real activations are): the
    weight-optimal truncation is then far from the output-optimal one."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(0).normal(size=(8, 2))
    sources = rng.normal(size=(4 * batches, 2, 10, 10))
    x = np.einsum("cs,bshw->bchw", mixing, sources) + 0.01 * rng.normal(size=(4 * batches, 8,
                                                                              10, 10))
    x = x.astype(np.float32)
    return x, ArrayData(_net(), {"x": x}, batch_size=4)


@pytest.mark.parametrize("method", ["spatial_svd", "channel_svd", "tucker2"])
def test_repair_reduces_the_output_error(method):
    _, calibration = _data(2)
    held_out, _ = _data(3, batches=1)
    reference = run(_net(), {"x": held_out})
    errors = {}
    for repair in (False, True):
        model = _net()
        lowrank = LowRankPass(method=method, select="macs", target_macs=0.6, round_to=2,
                              only_if_faster=False, repair=repair)
        lowrank.with_context(PassContext(calibration=calibration))
        lowrank(model)
        assert lowrank.decisions[0].split
        output = run(model, {"x": held_out})
        errors[repair] = float(np.sqrt(np.mean((output - reference) ** 2) / np.mean(reference**2)))
    assert lowrank.stats["layers_repaired"] == 1
    assert errors[True] < 0.8 * errors[False], errors
