"""quantize_weights: int8 weights behind DequantizeLinear, float activations."""

from __future__ import annotations

import collections

import onnx
import onnx_ir as ir
import onnxruntime as ort

from graphopt.cost import model_cost
from graphopt.model_io import resolve_model
from graphopt.passes.quantize.weights_only import QuantizeWeightsPass
from graphopt.pipeline import Pipeline


def _ops(model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph)


def test_mlp_weights_shrink_fourfold_and_compute_stays_float():
    model = resolve_model("zoo:mlp")
    before = model_cost(model).weight_bytes
    report = Pipeline.from_preset("int8-weights").run(model)
    record = report.passes[-1]
    assert record.name == "quantize_weights" and not record.lossless
    assert record.stats["weights_quantized"] == 3
    ops = _ops(model)
    assert ops["QuantizeLinear"] == 0 and ops["DequantizeLinear"] == 3
    assert report.output_cost.weight_bytes < 0.3 * before
    assert report.fidelity.sqnr_db > 30, report.fidelity.summary()
    assert report.output_cost.weight_bytes_by_dtype["int8"] > 0
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    ort.InferenceSession(ir.to_proto(model).SerializeToString(),
                         providers=["CPUExecutionProvider"])  # all optimizations on


def test_kept_op_types_stay_float():
    model = resolve_model("zoo:mlp")
    graph_pass = QuantizeWeightsPass(keep=("Gemm",))
    graph_pass(model)
    assert graph_pass.stats["weights_quantized"] == 3 - _ops(model)["Gemm"]
    assert any("kept float" in line for line in graph_pass.explanations)


def test_small_weights_stay_float_and_old_opsets_are_upgraded():
    model = resolve_model("zoo:squeezenet")
    assert model.opset_imports[""] == 9
    graph_pass = QuantizeWeightsPass(min_elements=10_000)
    graph_pass(model)
    assert model.opset_imports[""] == 17
    assert graph_pass.stats["weights_too_small"] > 0
    quantized = graph_pass.stats["weights_quantized"]
    assert 0 < quantized < 26 and _ops(model)["DequantizeLinear"] == quantized


def test_int4_blocks_along_the_reduction_axis_at_opset_21():
    import numpy as np

    from graphopt.passes.quantize.qparams import INT4_QMAX, quantize_weight_blocked

    model = resolve_model("zoo:mlp")
    before = model_cost(model).weight_bytes
    report = Pipeline.from_preset("int4-weights").run(model)
    record = report.passes[-1]
    assert model.opset_imports[""] == 21
    dequantizers = [n for n in model.graph if n.op_type == "DequantizeLinear"]
    int4 = [n for n in dequantizers if n.inputs[0].const_value.dtype == ir.DataType.INT4]
    assert len(int4) == record.stats["weights_int4"] > 0
    assert all(n.attributes.get_int("block_size") == 32 for n in int4)
    assert report.output_cost.weight_bytes < 0.2 * before
    assert report.fidelity.sqnr_db > 15, report.fidelity.summary()
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    # One scale per 32 consecutive entries along the axis, symmetric within [-7, 7].
    weight = np.random.default_rng(0).normal(0, 1, (8, 64)).astype(np.float32)
    q, scales = quantize_weight_blocked(weight, 1, 32)
    assert scales.shape == (8, 2) and q.dtype.name == "int4"
    restored = (q.astype(np.float32).reshape(8, 2, 32) * scales[:, :, None]).reshape(8, 64)
    assert np.abs(q.astype(np.int8)).max() <= INT4_QMAX
    assert np.abs(restored - weight).max() <= scales.max() / 2 + 1e-6
