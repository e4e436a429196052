"""``convert_float`` on tiny graphs (exact structure, then numbers in onnxruntime with graph
optimizations off, then the full checker) and on zoo models end to end.

Numerical tolerances. fp16 has unit roundoff u = 2^-11 (bf16: 2^-8). onnxruntime's CPU provider
computes most fp16 ops in fp32 between Casts it inserts (even with graph optimizations off), so a
converted model differs from the fp32 model run on the *rounded* weights only by roundings of
activations to the half format, each at most u of that activation. The tiny graphs keep
activations and gains near 1, so ``k`` such roundings on a path stay below ``2 k u`` of the output
range (the 2 covers the gain). Against the unrounded fp32 model the weights' rounding adds
``sqrt(fan-in) * u`` of the range for random signs: :data:`FP16_TOL` = 16 u covers fan-ins up to
36 with room. Weights mode computes in fp32, so there it is exact against the rounded weights.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from fusion.graph_testing import build, check_model, nodes_of, op_types, run, snapshot

from graphopt import oracle
from graphopt.model_io import resolve_model
from graphopt.passes.cleanup import CleanupPass
from graphopt.passes.convert_float import FP32_OPS, ConvertFloatPass
from graphopt.passes.fusion import FusePass
from graphopt.spec import build_passes
from graphopt.verify import compare_outputs, random_inputs

U16 = 2.0**-11
U_BF16 = 2.0**-8
FP16_TOL = 16 * U16
FLOAT, HALF, BF16 = ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16

RNG = np.random.default_rng(0)


def _weights(*shape: int) -> np.ndarray:
    """Random weights with unit gain (std 1/sqrt(fan-in))."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (RNG.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)


def _convert(model: ir.Model, **options) -> ConvertFloatPass:
    options.setdefault("fp32_stem", 0.0)
    graph_pass = ConvertFloatPass(**options)
    graph_pass(model)
    return graph_pass


def _casts(model: ir.Model) -> list[ir.Node]:
    return nodes_of(model, "Cast")


def _dtype_of_output(model: ir.Model, op_type: str) -> list[ir.DataType]:
    return [node.outputs[0].dtype for node in nodes_of(model, op_type)]


def _rounded(reference: onnx.ModelProto, converted: ir.Model) -> ir.Model:
    """The fp32 model with every initializer the pass stored in half precision rounded the same
    way (by name; copies named ``<name>_fp16`` count for their source)."""
    model = ir.from_proto(reference)
    halves = {}
    for name, value in converted.graph.initializers.items():
        if value.dtype in (HALF, BF16):
            source = name.rsplit("_", 1)[0] if name not in model.graph.initializers else name
            halves[source] = value.const_value.numpy().astype(np.float32)
    for name, array in halves.items():
        value = model.graph.initializers[name]
        value.const_value = ir.Tensor(array, name=name)
    return model


def _assert_close(expected: dict, actual: dict, tol: float) -> None:
    assert list(actual) == list(expected)
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale, err_msg=name)


def _assert_numbers(reference, converted, *, roundings: int, unit: float = U16) -> None:
    """Close to the fp32 model on the rounded weights (activation roundings only) and to the
    fp32 model itself (plus the weights' rounding); the checker accepts the result."""
    check_model(converted)
    inputs = random_inputs(ir.from_proto(reference), seed=3)
    got = run(converted, inputs)
    _assert_close(run(_rounded(reference, converted), inputs), got, 2 * roundings * unit)
    _assert_close(run(reference, inputs), got, 16 * unit)


CONV_CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)
    y = Relu (c2)
}
"""


def _conv_chain() -> ir.Model:
    return build(CONV_CHAIN, w1=_weights(4, 4, 3, 3), b1=_weights(4), w2=_weights(4, 4, 3, 3),
                 b2=_weights(4))


def test_conv_chain_is_half_between_two_boundary_casts():
    model = _conv_chain()
    reference = snapshot(model)
    graph_pass = _convert(model)
    assert op_types(model) == ["Cast", "Conv", "Relu", "Conv", "Relu", "Cast"]
    first, last = _casts(model)
    assert first.inputs[0].name == "x" and first.attributes.get_int("to") == HALF
    assert last.outputs[0].name == "y" and last.attributes.get_int("to") == FLOAT
    assert model.graph.inputs[0].dtype == FLOAT and model.graph.outputs[0].dtype == FLOAT
    assert _dtype_of_output(model, "Conv") == [HALF, HALF]
    assert {v.dtype for v in model.graph.initializers.values()} == {HALF}
    assert graph_pass.stats["casts_inserted"] == 2
    assert graph_pass.stats["initializers_converted"] == 4
    assert graph_pass.stats["nodes_kept_fp32"] == 0
    _assert_numbers(reference, model, roundings=3)


def test_keep_io_false_makes_the_interface_half_with_no_cast():
    model = _conv_chain()
    _convert(model, keep_io=False)
    assert "Cast" not in op_types(model)
    assert model.graph.inputs[0].dtype == HALF and model.graph.outputs[0].dtype == HALF
    check_model(model)
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float16)
    (y,) = run(model, {"x": x}).values()
    assert y.dtype == np.float16 and np.all(np.isfinite(y))


def test_fragile_op_in_the_middle_stays_fp32_between_two_casts():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
            c1 = Conv (x, w1)
            e = Exp (c1)
            y = Conv (e, w2)
        }
        """,
        w1=_weights(4, 4, 1, 1) * 0.5, w2=_weights(4, 4, 1, 1),
    )
    reference = snapshot(model)
    graph_pass = _convert(model)
    assert op_types(model) == ["Cast", "Conv", "Cast", "Exp", "Cast", "Conv", "Cast"]
    exp = nodes_of(model, "Exp")[0]
    assert exp.inputs[0].dtype == FLOAT and exp.outputs[0].dtype == FLOAT
    assert graph_pass.stats["nodes_kept_fp32"] == 1
    assert graph_pass.stats["kept_fp32_fragile"] == 1
    assert any("Exp" in line and FP32_OPS["Exp"] in line for line in graph_pass.explanations)
    _assert_numbers(reference, model, roundings=4)


def test_one_cast_per_boundary_value_shared_by_all_readers():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] a, float[1, 4, 6, 6] b,
                                     float[1, 4, 6, 6] c) {
            h = Conv (x, w)
            a = Exp (h)
            b = Log (h)
            c = Relu (h)
        }
        """,
        w=_weights(4, 4, 1, 1),
    )
    _convert(model)
    casts = _casts(model)
    # x -> half; h -> fp32 once for Exp, Log and the fp32 output c (Relu follows into fp32).
    assert len(casts) == 2
    h_cast = next(c for c in casts if c.inputs[0].producer() is not None)
    readers = {user.op_type for user, _ in h_cast.outputs[0].uses()}
    assert readers == {"Exp", "Log", "Relu"}
    assert not any(c.inputs[0].producer() in casts for c in casts)  # no Cast pairs
    assert [v.name for v in model.graph.outputs] == ["a", "b", "c"]
    check_model(model)


def test_keep_by_op_type_and_by_name():
    model = _conv_chain()
    first_relu = nodes_of(model, "Relu")[0]
    first_relu.name = "relu_one"
    graph_pass = _convert(model, keep=("relu_one",))
    assert [n.outputs[0].dtype for n in nodes_of(model, "Relu")] == [FLOAT, HALF]
    assert graph_pass.stats["kept_fp32_keep"] == 1
    assert len(_casts(model)) == 4

    model = _conv_chain()
    graph_pass = _convert(model, keep=("Conv",))
    # Both Convs fp32; the Relus between/after them follow at no Cast.
    assert "Cast" not in op_types(model)
    assert {v.dtype for v in model.graph.initializers.values()} == {FLOAT}
    assert graph_pass.stats["kept_fp32_keep"] == 2


def test_weights_mode_stores_half_weights_and_computes_fp32():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 32, 6, 6] x) => (float[1, 32, 6, 6] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            y = Relu (c)
        }
        """,
        w=_weights(32, 32, 3, 3), b=_weights(32),
    )
    reference = snapshot(model)
    graph_pass = _convert(model, mode="weights")
    assert op_types(model) == ["Cast", "Conv", "Relu"]
    assert model.graph.initializers["w"].dtype == HALF
    assert model.graph.initializers["b"].dtype == FLOAT  # 32 elements: below the threshold
    assert all(node.outputs[0].dtype == FLOAT for node in model.graph)
    assert graph_pass.stats["initializers_converted"] == 1
    assert graph_pass.stats["casts_inserted"] == 1
    check_model(model)
    inputs = random_inputs(ir.from_proto(reference), seed=3)
    # fp32 compute on the rounded weights: equal up to fp32 summation order.
    _assert_close(run(_rounded(reference, model), inputs), run(model, inputs), 1e-6)
    _assert_close(run(reference, inputs), run(model, inputs), FP16_TOL)


def test_bf16_weights_mode_runs_in_onnxruntime():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 64] x) => (float[2, 32] y) {
            y = Gemm <transB = 1> (x, w, b)
        }
        """,
        w=_weights(32, 64), b=_weights(32),
    )
    reference = snapshot(model)
    _convert(model, to="bf16", mode="weights")
    assert model.graph.initializers["w"].dtype == BF16
    check_model(model)
    inputs = random_inputs(ir.from_proto(reference), seed=3)
    _assert_close(run(_rounded(reference, model), inputs), run(model, inputs), 1e-6)
    _assert_close(run(reference, inputs), run(model, inputs), 16 * U_BF16)


def test_integer_values_are_never_cast_and_shape_readers_take_any_type():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 144] y, int64[4] s) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            s = Shape (c)
            f = Reshape (c, shape)
            y = Gemm <transB = 1> (f, g)
        }
        """,
        w=_weights(4, 4, 3, 3), shape=np.array([1, 144], np.int64), g=_weights(144, 144),
    )
    _convert(model)
    for cast in _casts(model):
        assert cast.inputs[0].dtype in (FLOAT, HALF)
    assert len(_casts(model)) == 2  # x in, y out; Shape reads the half Conv output directly
    shape_node = nodes_of(model, "Shape")[0]
    assert shape_node.inputs[0].dtype == HALF
    assert model.graph.initializers["shape"].dtype == ir.DataType.INT64
    check_model(model)


def test_resize_converts_its_data_and_keeps_roi_and_scales_fp32():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 12, 12] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            u = Resize <mode = "linear"> (c, roi, scales)
            y = Conv <pads = [1, 1, 1, 1]> (u, w2)
        }
        """,
        w=_weights(4, 4, 3, 3), w2=_weights(4, 4, 3, 3), roi=np.zeros((0,), np.float32),
        scales=np.array([1, 1, 2, 2], np.float32),
    )
    reference = snapshot(model)
    _convert(model)
    resize = nodes_of(model, "Resize")[0]
    assert resize.inputs[0].dtype == HALF and resize.outputs[0].dtype == HALF
    assert resize.inputs[1].dtype == FLOAT and resize.inputs[2].dtype == FLOAT
    assert len(_casts(model)) == 2  # onnxconverter-common keeps Resize fp32: 4 Casts
    _assert_numbers(reference, model, roundings=4)


def test_existing_cast_to_float_is_retargeted_and_identity_casts_dropped():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x, int64[1, 4, 6, 6] m) => (float[1, 4, 6, 6] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            mf = Cast <to = 1> (m)
            s = Add (c, mf)
            same = Cast <to = 1> (s)
            y = Conv <pads = [1, 1, 1, 1]> (same, w2)
        }
        """,
        w=_weights(4, 4, 3, 3), w2=_weights(4, 4, 3, 3),
    )
    graph_pass = _convert(model)
    casts = _casts(model)
    int_cast = next(c for c in casts if c.inputs[0].name == "m")
    assert int_cast.attributes.get_int("to") == HALF  # int64 -> fp16 directly, no Cast pair
    assert graph_pass.stats["casts_retargeted"] == 2
    assert graph_pass.stats["casts_removed"] == 1  # the fp32 -> fp32 Cast became fp16 -> fp16
    assert len(casts) == 3  # x in, the retargeted int64 Cast, y out
    check_model(model)


def test_an_initializer_read_in_both_precisions_is_copied_not_cast():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y, float[1, 4, 6, 6] p) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            m = Mul (c, k)
            y = Conv <pads = [1, 1, 1, 1]> (m, w2)
            p = Pow (c, k)
        }
        """,
        w=_weights(4, 4, 3, 3), w2=_weights(4, 4, 3, 3), k=np.array([2.0], np.float32),
    )
    reference = snapshot(model)
    graph_pass = _convert(model)
    assert model.graph.initializers["k"].dtype == FLOAT  # Pow's exponent stays fp32
    assert model.graph.initializers["k_fp16"].dtype == HALF  # Mul's copy
    assert graph_pass.stats["initializers_duplicated"] == 1
    assert nodes_of(model, "Mul")[0].inputs[1].name == "k_fp16"
    assert len(_casts(model)) == 3  # x in, c to fp32 for Pow, y out
    _assert_numbers(reference, model, roundings=4)


def test_constant_nodes_in_the_region_are_rounded():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            k = Constant <value = float[1] {0.1}> ()
            m = Mul (c, k)
            y = Conv <pads = [1, 1, 1, 1]> (m, w2)
        }
        """,
        w=_weights(4, 4, 3, 3), w2=_weights(4, 4, 3, 3),
    )
    graph_pass = _convert(model)
    constant = nodes_of(model, "Constant")[0]
    assert constant.outputs[0].dtype == HALF
    assert constant.attributes["value"].as_tensor().numpy().tolist() == [np.float16(0.1)]
    assert graph_pass.stats["constants_converted"] == 1
    assert len(_casts(model)) == 2
    check_model(model)


def test_constants_beyond_the_fp16_range_are_clamped_not_made_infinite():
    big = np.array([1e5, -2e5, 7.0, np.inf], np.float32).reshape(1, 4, 1, 1)
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 2, 2] x) => (float[1, 4, 2, 2] y) {
            c = Conv (x, w)
            m = Mul (c, big)
            y = Conv (m, w2)
        }
        """,
        w=_weights(4, 4, 1, 1), w2=_weights(4, 4, 1, 1), big=big,
    )
    graph_pass = _convert(model)
    assert graph_pass.stats["values_clamped"] == 2
    stored = model.graph.initializers["big"].const_value.numpy().ravel()
    assert stored.dtype == np.float16
    assert stored.tolist() == [65504.0, -65504.0, 7.0, np.inf]
    assert any("big" in line and "clamped" in line for line in graph_pass.explanations)


def test_softmax_over_a_long_axis_stays_fp32_and_a_short_one_converts():
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 8] x) => (float[2, 8] y) {
            h = MatMul (x, w)
            s = Softmax <axis = -1> (h)
            y = MatMul (s, w2)
        }
        """
    for n, kept in ((16, 0), (2048, 1)):
        model = build(text, w=_weights(n, 8).T.copy(), w2=_weights(8, n).T.copy())  # [in, out]
        graph_pass = _convert(model)
        softmax = nodes_of(model, "Softmax")[0]
        assert softmax.outputs[0].dtype == (FLOAT if kept else HALF)
        assert graph_pass.stats["nodes_kept_fp32"] == kept
        assert len(_casts(model)) == 2 + 2 * kept
        check_model(model)


def test_shape_arithmetic_stays_fp32():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 6, 6] x) => (float[1, 4, 12, 12] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            s = Shape (c)
            f = Cast <to = 1> (s)
            g = Mul (f, two)
            i = Cast <to = 7> (g)
            u = Resize <mode = "nearest"> (c, , , i)
            y = Conv <pads = [1, 1, 1, 1]> (u, w2)
        }
        """,
        w=_weights(4, 4, 3, 3), w2=_weights(4, 4, 3, 3), two=np.array([1, 1, 2, 2], np.float32),
    )
    graph_pass = _convert(model)
    mul = nodes_of(model, "Mul")[0]
    assert mul.outputs[0].dtype == FLOAT
    assert model.graph.initializers["two"].dtype == FLOAT
    assert graph_pass.stats["kept_fp32_shape"] == 2  # the Cast to float and the Mul
    assert nodes_of(model, "Resize")[0].outputs[0].dtype == HALF
    check_model(model)


def test_stem_keeps_the_first_layers_fp32_without_an_extra_cast():
    layers = "\n".join(
        f"c{i} = Conv <pads = [1, 1, 1, 1]> (r{i - 1}, w{i})\n r{i} = Relu (c{i})"
        for i in range(1, 5)
    )
    model = build(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8, 6, 6] r0) => (float[1, 8, 6, 6] r4) {{ {layers} }}
        """,
        # channels 8 -> 8 -> 16 -> 24 -> 8: w1 holds 576 of the 6912 weights (8.3%)
        w1=_weights(8, 8, 3, 3), w2=_weights(16, 8, 3, 3), w3=_weights(24, 16, 3, 3),
        w4=_weights(8, 24, 3, 3),
    )
    graph_pass = _convert(model, fp32_stem=0.1)
    assert graph_pass.stats["kept_fp32_stem"] == 2  # Conv c1 and its Relu
    assert model.graph.initializers["w1"].dtype == FLOAT
    assert model.graph.initializers["w2"].dtype == HALF
    casts = _casts(model)
    assert len(casts) == 2 and casts[0].inputs[0].name == "r1"
    assert any("stem" in line for line in graph_pass.explanations)
    check_model(model)

    model = build(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8, 6, 6] r0) => (float[1, 8, 6, 6] r4) {{ {layers} }}
        """,
        w1=_weights(8, 8, 3, 3), w2=_weights(16, 8, 3, 3), w3=_weights(24, 16, 3, 3),
        w4=_weights(8, 24, 3, 3),
    )
    assert _convert(model, fp32_stem=0.05).stats["kept_fp32_stem"] == 0  # w1 is over budget


def test_values_read_inside_subgraphs_reach_them_in_fp32():
    model = build(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 2, 2] x, bool cond) => (float[1, 4, 2, 2] y) {
            c = Conv (x, w)
            i = If (cond) <
                then_branch = t () => (float[1, 4, 2, 2] r) { r = Relu (c) },
                else_branch = e () => (float[1, 4, 2, 2] n) { n = Neg (c) }
            >
            y = Conv (i, w)
        }
        """,
        w=_weights(4, 4, 1, 1),
    )
    reference = snapshot(model)
    graph_pass = _convert(model)
    assert graph_pass.stats["kept_fp32_unknown"] == 1  # If: control flow is not converted
    assert op_types(model) == ["Cast", "Conv", "Cast", "If", "Cast", "Conv", "Cast"]
    (then_relu,) = model.graph.node(3).attributes["then_branch"].as_graph()
    assert then_relu.inputs[0].dtype == FLOAT and then_relu.inputs[0].name == "c_fp32"
    check_model(model)
    inputs = {"x": RNG.standard_normal((1, 4, 2, 2)).astype(np.float32), "cond": np.array(True)}
    _assert_close(run(reference, inputs), run(model, inputs), FP16_TOL)


def test_preconditions_name_the_fix():
    model = _conv_chain()
    model.opset_imports[""] = 12
    with pytest.raises(ir.passes.PreconditionError, match="opset >= 13.*cleanup"):
        ConvertFloatPass(to="bf16")(model)
    legacy = _conv_chain()
    legacy.graph.inputs.append(legacy.graph.initializers["w1"])
    with pytest.raises(ir.passes.PreconditionError, match="graph inputs.*cleanup"):
        ConvertFloatPass()(legacy)


def test_bf16_compute_needs_the_opset_where_conv_has_bfloat16():
    model = _conv_chain()
    graph_pass = _convert(model, to="bf16")
    assert "Cast" not in op_types(model)  # Conv-11 has no bfloat16: nothing worth converting
    assert any("Conv-11 has no bfloat16 type (from opset 22)" in line
               for line in graph_pass.explanations)

    model = build(CONV_CHAIN.replace('"" : 17', '"" : 22'), w1=_weights(4, 4, 3, 3),
                  b1=_weights(4), w2=_weights(4, 4, 3, 3), b2=_weights(4))
    reference = snapshot(model)
    _convert(model, to="bf16")
    assert _dtype_of_output(model, "Conv") == [BF16, BF16]
    check_model(model)
    ov = pytest.importorskip("openvino")  # onnxruntime's CPU provider has no bfloat16 Conv
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(ir.to_proto(model).SerializeToString(), b""), "CPU",
        {"INFERENCE_PRECISION_HINT": "f32"},
    )
    inputs = random_inputs(ir.from_proto(reference), seed=3)
    got = {"y": np.asarray(compiled(list(inputs.values()))[0])}
    _assert_close(run(reference, inputs), got, 16 * U_BF16)


def test_spec_options_and_presets():
    (graph_pass,) = build_passes("convert_float(to=bf16,keep=[Softmax;n12],mode=weights)")
    assert (graph_pass.to, graph_pass.keep, graph_pass.mode) == ("bf16", ("Softmax", "n12"),
                                                                 "weights")
    assert [p.name for p in build_passes("fp16")] == ["cleanup", "fuse", "convert_float"]
    assert build_passes("bf16")[-1].mode == "weights"
    assert not ConvertFloatPass.lossless


def _oracle_fidelity(original: ir.Model, converted: ir.Model):
    inputs = random_inputs(original, seed=0)
    reference = oracle.run_model(oracle.make_session(original), inputs)
    return compare_outputs(reference, oracle.run_model(oracle.make_session(converted), inputs))


def test_resnet50_meets_the_issue_target():
    """Issue 7: <= 0.52x the input size, >= 40 dB, runs in onnxruntime and OpenVINO."""
    original = resolve_model("zoo:resnet50")
    size_in = len(ir.to_proto(original).SerializeToString())
    model = ir.from_proto(ir.to_proto(original))
    for graph_pass in build_passes("fp16"):
        graph_pass(model)
    payload = ir.to_proto(model).SerializeToString()
    assert len(payload) <= 0.52 * size_in
    assert op_types(model).count("Cast") == 2
    assert _oracle_fidelity(original, model).sqnr_db >= 40
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(payload, b""), "CPU")
    (result,) = compiled(list(random_inputs(original, seed=0).values())).values()
    assert np.all(np.isfinite(result))


def test_squeezenet_through_the_pass_directly():
    original = resolve_model("zoo:squeezenet")
    model = ir.from_proto(ir.to_proto(original))
    CleanupPass()(model)
    FusePass()(model)
    graph_pass = ConvertFloatPass()
    graph_pass(model)
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert op_types(model).count("Cast") == 2
    conv_types = [node.outputs[0].dtype for node in nodes_of(model, "Conv")]
    assert conv_types == sorted(conv_types, key=lambda t: t == HALF)  # an fp32 stem, then half
    assert conv_types.count(HALF) >= 0.8 * len(conv_types)
    fidelity = _oracle_fidelity(original, model)
    assert fidelity.sqnr_db >= 55 and fidelity.top1_agreement == 1.0
    types = [(node.op_type, node.outputs[0].dtype) for node in model.graph]
    assert not ConvertFloatPass()(model).modified  # idempotent: the stem is found again
    assert [(node.op_type, node.outputs[0].dtype) for node in model.graph] == types
