"""Precision of MAC nodes and graphs: hand-written QDQ, weight-only, integer and half graphs,
graphopt's own quantizers, the graph names on files, budgets and the compute-bound energy."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import pytest

from graphopt.backends.base import graph_precision
from graphopt.backends.energy import ModelEnergyEstimator
from graphopt.budget import precision_budget
from graphopt.calibration import RandomData
from graphopt.cost import model_cost
from graphopt.model_io import resolve_model
from graphopt.pass_context import PassContext
from graphopt.passes.quantize.quantize_pass import QuantizePass
from graphopt.passes.quantize.weights_only import QuantizeWeightsPass
from graphopt.precision import (
    GRAPH_PRECISIONS,
    NodePrecision,
    model_precision,
    node_precision,
    summarize,
)


def _net() -> ir.Model:
    """zoo:tiny_cnn: Conv, BN, ReLU, MaxPool, Conv, BN, ReLU, pooling, Gemm, float32."""
    return resolve_model("zoo:tiny_cnn")


def _quantized(**options) -> ir.Model:
    model = _net()
    graph_pass = QuantizePass(mixed=False, latency_aware=False, **options)
    graph_pass.with_context(PassContext(calibration=RandomData(model, batches=4, seed=1)))
    graph_pass(model)
    return model


def _weights_only(bits: int) -> ir.Model:
    model = _net()
    QuantizeWeightsPass(bits=bits, min_elements=1)(model)
    return model


def _parsed(text: str) -> ir.Model:
    model = ir.from_proto(onnx.parser.parse_model(text))
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    return model


def _by_op(model: ir.Model) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in model.graph:
        precision = node_precision(node)
        if precision is not None:
            found.setdefault(node.op_type, []).append(precision.name)
    return found


# -- graphopt's own quantizers -------------------------------------------------------------


def test_full_qdq_is_int8_everywhere():
    model = _quantized()
    assert _by_op(model) == {"Conv": ["int8", "int8"], "Gemm": ["int8"]}
    assert model_precision(model) == "int8"


def test_a_layer_kept_float_makes_the_graph_mixed():
    model = _quantized(keep=("Gemm",))
    assert _by_op(model) == {"Conv": ["int8", "int8"], "Gemm": ["fp32"]}
    assert model_precision(model) == "mixed"
    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    assert node_precision(gemm) == NodePrecision("fp32", "fp32")


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_only_graphs_compute_in_float(bits):
    model = _weights_only(bits)
    name = f"int{bits}-weights"
    # The convs reduce over 3 and 16 input channels, no whole int4 block: they stay int8.
    assert _by_op(model) == {"Conv": ["int8-weights"] * 2, "Gemm": [name]}
    assert {node_precision(n).arithmetic for n in model.graph if node_precision(n)} == {"fp32"}
    assert model_precision(model) == name


def test_int4_wins_over_int8_weights_and_float_layers_do_not_make_mixed():
    assert summarize(["int8-weights", "int4-weights", "fp32"]) == "int4-weights"
    assert summarize(["int8-weights", "fp32", "fp32"]) == "int8-weights"
    assert summarize(["int8", "int8-weights"]) == "mixed"
    assert summarize(["fp16", "fp16", "fp32"]) == "fp16"
    assert summarize(["fp16", "fp32"]) == "fp32"  # a tie goes to fp32
    assert summarize([]) is None


# -- hand-written graphs -------------------------------------------------------------------


_QDQ_MATMUL = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 16] x) => (float[4, 8] y) {{
        s = Constant <value = float {{0.1}}> ()
        z = Constant <value = uint8 {{128}}> ()
        q = QuantizeLinear (x, s, z)
        d = DequantizeLinear (q, s, z)
        {weight}
        y = MatMul (d, w)
    }}
"""
_DQ_THROUGH_TRANSPOSE = """
        wq = Constant <value = int8[8, 16] {1}> ()
        wz = Constant <value = int8 {0}> ()
        wd = DequantizeLinear (wq, s, wz)
        w = Transpose (wd)
"""


@pytest.mark.parametrize(("weight", "name"), [
    (_DQ_THROUGH_TRANSPOSE, "int8"),  # layout operators are looked through
    ("w = Constant <value = float[16, 8] {1.0}> ()", "fp32"),  # quantized data alone: float
])
def test_qdq_data_with_a_weight(weight, name):
    model = _parsed(_QDQ_MATMUL.format(weight=weight))
    matmul = next(n for n in model.graph if n.op_type == "MatMul")
    assert node_precision(matmul) == NodePrecision(name, name)
    assert model_precision(model) == name


def test_integer_operators_are_int8():
    model = _parsed("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4, 16] x) => (int32[4, 8] y) {
            q, s, z = DynamicQuantizeLinear (x)
            w = Constant <value = uint8[16, 8] {1}> ()
            y = MatMulInteger (q, w, z)
        }
    """)
    assert _by_op(model) == {"MatMulInteger": ["int8"]}
    assert model_precision(model) == "int8"


def test_half_graphs_and_graphs_without_mac_nodes():
    half = _parsed("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float16[4, 16] x, float16[16, 8] w) => (float16[4, 8] y) {
            y = MatMul (x, w)
        }
    """)
    assert _by_op(half) == {"MatMul": ["fp16"]}
    assert model_precision(half) == "fp16"
    bf16 = _parsed("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bfloat16[4, 16] x, bfloat16[16, 8] w) => (bfloat16[4, 8] y) {
            y = MatMul (x, w)
        }
    """)
    assert model_precision(bf16) == "bf16"
    no_macs = _parsed("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float16[4] x, float16[4] b) => (float16[4] y) {
            y = Add (x, b)
        }
    """)
    assert model_precision(no_macs) == "fp32"  # no float initializers
    bias = no_macs.graph.inputs.pop()
    bias.const_value = ir.tensor(np.ones(4, np.float16))
    no_macs.graph.register_initializer(bias)
    assert model_precision(no_macs) == "fp16"
    qdq_only = _parsed("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4] x) => (float[4] y) {
            s = Constant <value = float {0.1}> ()
            q = QuantizeLinear (x, s)
            y = DequantizeLinear (q, s)
        }
    """)
    assert model_precision(qdq_only) == "int8"


# -- files, costs, budgets, energy ---------------------------------------------------------


@pytest.mark.parametrize(("make", "name"), [
    (_net, "fp32"),
    (_quantized, "int8"),
    (lambda: _quantized(keep=("Gemm",)), "mixed"),
    (lambda: _weights_only(8), "int8-weights"),
    (lambda: _weights_only(4), "int4-weights"),
])
def test_graph_precision_of_a_file_never_reads_external_data(tmp_path, make, name):
    path = tmp_path / "model.onnx"
    ir.save(make(), path, external_data="model.data", size_threshold_bytes=0)
    (tmp_path / "model.data").unlink()  # the weights' bytes are not needed, only their types
    assert graph_precision(path) == name
    assert name in GRAPH_PRECISIONS


def test_cost_carries_node_and_graph_precisions():
    cost = model_cost(_quantized(keep=("Gemm",)))
    assert cost.precision == "mixed"
    gemm = next(c for c in cost.per_node if c.op_type == "Gemm")
    assert (gemm.precision, gemm.arithmetic) == ("fp32", "fp32")
    assert {c.precision for c in cost.per_node if c.op_type == "Conv"} == {"int8"}
    assert all(c.precision == "" for c in cost.per_node if c.op_type not in ("Conv", "Gemm"))
    assert cost.macs_by_precision == {"int8": cost.macs - gemm.macs, "fp32": gemm.macs}
    assert sum(cost.macs_by_arithmetic.values()) == cost.macs
    assert cost.to_dict()["precision"] == "mixed"


def test_quantized_graphs_are_judged_on_int8s_tolerance():
    for name in ("mixed", "int8-weights", "int4-weights"):
        assert precision_budget(name) == precision_budget("int8")
    assert precision_budget("fp16") != precision_budget("int8")


def test_mixed_energy_lies_between_all_fp32_and_all_int8():
    cost = model_cost(_quantized(keep=("Gemm",)))
    estimator = ModelEnergyEstimator(process_nm=45.0)
    fp32 = estimator.estimate(model_cost(_net())).domains["compute"]
    int8 = estimator.estimate(cost, "int8").domains["compute"]
    mixed = estimator.estimate(cost)
    assert int8 < mixed.domains["compute"] < fp32
    by = cost.macs_by_precision
    expected = (by["int8"] * (0.2 + 0.03) + by["fp32"] * (3.7 + 0.9)) * 1e-12
    assert mixed.domains["compute"] == pytest.approx(expected)
    assert f"{by['int8']:,} at int8" in mixed.note and f"{by['fp32']:,} at fp32" in mixed.note
    assert estimator.estimate(cost, "mixed").domains == mixed.domains  # the graph's own name


def test_weight_only_energy_prices_float_arithmetic():
    cost = model_cost(_weights_only(8))
    estimator = ModelEnergyEstimator()
    assert cost.macs_by_arithmetic == {"fp32": cost.macs}
    assert (estimator.estimate(cost).domains["compute"]
            == pytest.approx(cost.macs * estimator.mac_joules("fp32")))
    assert (estimator.estimate(cost).domains["weights"]
            < estimator.estimate(model_cost(_net())).domains["weights"])


def test_onnxruntime_qgemm_is_int8():
    node = ir.Node("com.microsoft", "QGemm", [])
    assert node_precision(node) == NodePrecision("int8", "int8")
