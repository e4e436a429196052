"""Least-squares repair: im2col rows agree with onnxruntime's Conv, and the refit last factor
reproduces the original layer's outputs better than the plain truncation."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank_testing import build, conv_model, relative_error, run

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


_NET = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 8, 10, 10] x) => (float[4, 16, 10, 10] y) {
        h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
        r = Relu (h)
        y = Conv <pads = [1, 1, 1, 1], group = 2> (r, w2, b2)
    }
"""


def _net():
    rng = np.random.default_rng(1)
    return build(_NET, w1=rng.normal(0, 0.2, (12, 8, 3, 3)).astype(np.float32),
                 b1=rng.normal(0, 0.1, 12).astype(np.float32),
                 w2=rng.normal(0, 0.2, (16, 6, 3, 3)).astype(np.float32),
                 b2=rng.normal(0, 0.1, 16).astype(np.float32))


def _data(seed, batches=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4 * batches, 8, 10, 10)).astype(np.float32) + 0.3
    return x, ArrayData(_net(), {"x": x}, batch_size=4)


@pytest.mark.parametrize("method", ["spatial_svd", "channel_svd", "tucker2"])
def test_repair_reduces_the_output_error(method):
    x, calibration = _data(2)
    held_out, _ = _data(3, batches=1)
    reference = run(_net(), {"x": held_out[:4]})
    errors = {}
    for repair in (False, True):
        model = _net()
        lowrank = LowRankPass(method=method, select="macs", target_macs=0.45, round_to=2,
                              only_if_faster=False, repair=repair)
        lowrank.with_context(PassContext(calibration=calibration))
        lowrank(model)
        assert all(d.split for d in lowrank.decisions)
        errors[repair] = relative_error(reference, run(model, {"x": held_out[:4]}))
    assert lowrank.stats["layers_repaired"] == 2
    assert errors[True] < 0.8 * errors[False]
