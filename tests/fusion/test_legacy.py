"""Legacy-operator rules: Sum, Dropout, Identity, Cast chains, Div by constant, neutral
elements, nested Concat."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from graph_testing import (
    apply,
    assert_equivalent,
    build,
    declines,
    nodes_of,
    op_types,
    snapshot,
)

from graphopt.passes.fusion import FusePass
from graphopt.passes.fusion.legacy import holds_all_values

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _ints64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def test_sum_of_one_input_is_removed_and_output_keeps_its_name():
    model = build(
        f"""{HEADER}
        g (float[2,3] x) => (float[2,3] y) {{
            r = Relu(x)
            y = Sum(r)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "sum_single")
    assert op_types(model) == ["Relu"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert fuse.stats == {"sum_single": 1}
    assert_equivalent(reference, model)


def test_sum_of_graph_input_straight_to_output_declines():
    model = build(f"{HEADER} g (float[2] x) => (float[2] y) {{ y = Sum(x) }}")
    fuse = apply(model, "sum_single")
    assert op_types(model) == ["Sum"]
    assert any("fed directly by graph input" in text for text in declines(fuse))


def test_sum_of_two_becomes_add_with_broadcasting():
    model = build(f"{HEADER} g (float[2,3] a, float[3] b) => (float[2,3] y) {{ y = Sum(a, b) }}")
    reference = snapshot(model)
    apply(model, "sum_to_add", "sum_single")
    assert op_types(model) == ["Add"]
    assert_equivalent(reference, model)


def test_sum_of_three_stays():
    model = build(
        f"{HEADER} g (float[2] a, float[2] b, float[2] c) => (float[2] y) {{ y = Sum(a, b, c) }}"
    )
    apply(model, "sum_to_add", "sum_single")
    assert op_types(model) == ["Sum"]


def test_inference_dropout_removed():
    model = build(
        f"""{HEADER}
        g (float[4,8] x) => (float[4,8] y) {{
            d = Dropout(x)
            y = Relu(d)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "dropout_remove")
    assert op_types(model) == ["Relu"]
    assert model.graph.node(0).inputs[0].name == "x"
    assert_equivalent(reference, model)


def test_dropout_with_used_mask_or_training_input_declines():
    model = build(
        f"""{HEADER}
        g (float[4] x, bool t) => (float[4] y, bool[4] m) {{
            d, m = Dropout(x)
            y = Dropout(d, ratio, t)
        }}""",
        ratio=np.array(0.5, np.float32),
    )
    fuse = apply(model, "dropout_remove")
    assert op_types(model) == ["Dropout", "Dropout"]
    reasons = declines(fuse)
    assert any("the mask output is used" in text for text in reasons)
    assert any("training_mode is not a constant" in text for text in reasons)


def test_identity_removed_before_output_renames_the_source():
    model = build(
        f"""{HEADER}
        g (float[3] x) => (float[3] y) {{
            r = Relu(x)
            y = Identity(r)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "identity_remove")
    assert op_types(model) == ["Relu"]
    assert model.graph.outputs[0].name == "y"
    assert_equivalent(reference, model)


def test_identity_between_initializer_and_output_declines():
    model = build(
        f"{HEADER} g (float[3] x) => (float[3] y, float[3] z) {{ y = Identity(w) z = Relu(x) }}",
        w=np.ones(3, np.float32),
    )
    fuse = apply(model, "identity_remove")
    assert op_types(model) == ["Identity", "Relu"]
    assert any("fed directly by an initializer" in text for text in declines(fuse))


def test_cast_to_own_type_removed():
    model = build(
        f"""{HEADER}
        g (float[3] x) => (float[3] y) {{
            c = Cast<to = 1>(x)
            y = Relu(c)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "cast_chain")
    assert op_types(model) == ["Relu"]
    assert_equivalent(reference, model)


def test_widening_cast_chain_shortened():
    model = build(
        f"""{HEADER}
        g (int32[5] x) => (double[5] y) {{
            a = Cast<to = 7>(x)
            y = Cast<to = 11>(a)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "cast_chain")
    (cast,) = nodes_of(model, "Cast")
    assert cast.inputs[0].name == "x"
    assert cast.attributes["to"].value == ir.DataType.DOUBLE
    assert fuse.stats == {"cast_chain": 1}
    inputs = {"x": np.array([-(2**31), -7, 0, 3, 2**31 - 1], np.int32)}
    assert_equivalent(reference, model, inputs=inputs)


def test_round_trip_through_wider_type_removes_both_casts():
    model = build(
        f"""{HEADER}
        g (float16[4] x) => (float16[4] y) {{
            a = Cast<to = 1>(x)
            b = Cast<to = 10>(a)
            y = Abs(b)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "cast_chain")
    assert op_types(model) == ["Abs"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize(
    ("source", "text", "reason"),
    [
        ("float", "a = Cast<to = 10>(x)  y = Cast<to = 11>(a)", "FLOAT16 does not hold"),
        ("float16", "a = Cast<to = 1>(x)  y = Cast<to = 11>(a)  z = Neg(a)", "other consumers"),
    ],
)
def test_narrowing_or_shared_cast_chain_declines(source, text, reason):
    model = build(f"{HEADER} g ({source}[4] x) => (double[4] y) {{ {text} }}")
    fuse = apply(model, "cast_chain")
    assert op_types(model).count("Cast") == 2
    assert any(reason in line for line in declines(fuse))


def test_int_through_float_to_narrow_int_declines():
    model = build(
        f"""{HEADER}
        g (int16[2] x) => (int8[2] y) {{
            a = Cast<to = 1>(x)
            y = Cast<to = 3>(a)
        }}"""
    )
    fuse = apply(model, "cast_chain")
    assert op_types(model) == ["Cast", "Cast"]
    assert any("saturates where the direct Cast wraps" in line for line in declines(fuse))


def test_holds_all_values_table():
    d = ir.DataType
    assert holds_all_values(d.INT64, d.INT32)
    assert holds_all_values(d.FLOAT, d.FLOAT16)
    assert holds_all_values(d.FLOAT16, d.UINT8)
    assert not holds_all_values(d.FLOAT, d.INT32)
    assert not holds_all_values(d.INT32, d.UINT32)
    assert not holds_all_values(d.FLOAT16, d.BFLOAT16)


def test_div_by_constant_becomes_mul_by_reciprocal():
    model = build(
        f"{HEADER} g (float[2,3] x) => (float[2,3] y) {{ y = Div(x, c) }}",
        c=np.array([0.5, 3.0, -7.0], np.float32),
    )
    reference = snapshot(model)
    apply(model, "div_to_mul")
    (mul,) = nodes_of(model, "Mul")
    assert mul.inputs[0].name == "x"
    np.testing.assert_allclose(mul.inputs[1].const_value.numpy(), [2.0, 1 / 3, -1 / 7], rtol=1e-7)
    assert "c" not in model.graph.initializers
    assert_equivalent(reference, model)


def test_div_by_power_of_two_in_float16_is_exact():
    model = build(
        f"{HEADER} g (float16[4] x) => (float16[4] y) {{ y = Div(x, c) }}",
        c=np.array(4.0, np.float16),
    )
    reference = snapshot(model)
    apply(model, "div_to_mul")
    assert op_types(model) == ["Mul"]
    assert_equivalent(reference, model, rtol=0)


@pytest.mark.parametrize(
    ("divisor", "reason"),
    [
        (np.array([2.0, 0.0], np.float32), "zero, infinite or NaN"),
        (np.array(3.0, np.float16), "would round"),
    ],
)
def test_div_declines_zero_or_inexact(divisor, reason):
    dtype = "float16" if divisor.dtype == np.float16 else "float"
    model = build(f"{HEADER} g ({dtype}[2] x) => ({dtype}[2] y) {{ y = Div(x, c) }}", c=divisor)
    fuse = apply(model, "div_to_mul")
    assert op_types(model) == ["Div"]
    assert any(reason in line for line in declines(fuse))


def test_div_by_graph_input_declines():
    model = build(f"{HEADER} g (float[2] x, float[2] c) => (float[2] y) {{ y = Div(x, c) }}")
    fuse = apply(model, "div_to_mul")
    assert op_types(model) == ["Div"]
    assert any("not a constant initializer" in line for line in declines(fuse))


@pytest.mark.parametrize("order", ["Add(x, z)", "Add(z, x)", "Mul(one, x)", "Sub(x, z)"])
def test_neutral_element_removed_in_both_operand_orders(order):
    model = build(
        f"""{HEADER}
        g (float[2,3] x) => (float[2,3] y) {{
            a = {order}
            y = Relu(a)
        }}""",
        z=np.zeros((3,), np.float32),
        one=np.ones((1, 1), np.float32),
    )
    reference = snapshot(model)
    apply(model, "neutral_element")
    assert op_types(model) == ["Relu"]
    assert model.graph.node(0).inputs[0].name == "x"
    assert_equivalent(reference, model)


def test_neutral_element_that_broadcasts_or_comes_first_in_sub_declines():
    model = build(
        f"""{HEADER}
        g (float[3] x) => (float[2,3] y, float[3] w) {{
            y = Add(x, z)
            w = Sub(z1, x)
        }}""",
        z=np.zeros((2, 3), np.float32),
        z1=np.zeros((3,), np.float32),
    )
    fuse = apply(model, "neutral_element")
    assert op_types(model) == ["Add", "Sub"]
    assert any("broadcasts" in line for line in declines(fuse))


def test_nested_concat_flattened():
    model = build(
        f"""{HEADER}
        g (float[1,2] a, float[1,3] b, float[1,4] c) => (float[1,12] y) {{
            i = Concat<axis = -1>(a, b)
            y = Concat<axis = 1>(c, i, b)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "concat_flatten")
    (concat,) = nodes_of(model, "Concat")
    assert [v.name for v in concat.inputs] == ["c", "a", "b", "b"]
    assert_equivalent(reference, model)


def test_nested_concat_on_other_axis_declines_and_repeated_input_flattens():
    model = build(
        f"""{HEADER}
        g (float[1,2] a, float[1,2] b) => (float[1,8] y, float[2,4] z) {{
            i = Concat<axis = 1>(a, b)
            y = Concat<axis = 1>(i, i)
            j = Concat<axis = 0>(a, b)
            z = Concat<axis = 1>(j, j)
        }}"""
    )
    fuse = apply(model, "concat_flatten")
    assert len(nodes_of(model, "Concat")) == 3
    reasons = declines(fuse)
    assert any("joins along another axis" in line for line in reasons)
    concat = model.graph.outputs[0].producer()
    assert [v.name for v in concat.inputs] == ["a", "b", "a", "b"]


@pytest.mark.parametrize(
    ("inner", "outer"),
    [("Mul(x, a)", "Mul(m, b)"), ("Mul(a, x)", "Mul(b, m)"), ("Add(x, a)", "Add(b, m)")],
)
def test_constant_chain_folds_both_constants_in_any_operand_order(inner, outer):
    model = build(
        f"""{HEADER}
        g (float[2,3] x) => (float[2,3] y) {{
            m = {inner}
            y = {outer}
        }}""",
        a=np.array(0.1, np.float32),
        b=np.array([0.5, 2.0, 4.0], np.float32),
    )
    reference = snapshot(model)
    fuse = apply(model, "constant_chain")
    (node,) = list(model.graph)
    assert node.inputs[0].name == "x"
    fold = np.multiply if node.op_type == "Mul" else np.add
    expected = fold(np.float32(0.1), np.array([0.5, 2.0, 4.0], np.float32))
    np.testing.assert_array_equal(node.inputs[1].const_value.numpy(), expected)
    assert set(model.graph.initializers) == {node.inputs[1].name}
    assert fuse.stats == {"constant_chain": 1}
    assert_equivalent(reference, model, rtol=1e-6)


def test_constant_chain_declines_shared_inner_or_growing_constant():
    model = build(
        f"""{HEADER}
        g (float[4,4] x) => (float[4,4] y, float[4,4] m, float[4,4] z) {{
            m = Mul(x, a)
            y = Mul(m, a)
            n = Add(x, col)
            z = Add(n, row)
        }}""",
        a=np.array(3.0, np.float32),
        col=np.ones((4, 1), np.float32),
        row=np.ones((1, 4), np.float32),
    )
    fuse = apply(model, "constant_chain")
    assert op_types(model) == ["Mul", "Mul", "Add", "Add"]
    reasons = declines(fuse)
    assert any("the inner Mul has other consumers" in line for line in reasons)
    assert any("would outgrow both constants" in line for line in reasons)


def test_whole_catalogue_reaches_a_fixed_point_on_a_legacy_tangle():
    model = build(
        f"""{HEADER}
        g (float[1,4,1,6] x, float[1,24] b) => (float[1,72] y) {{
            i = Identity(x)
            t1 = Transpose<perm = [0, 2, 3, 1]>(i)
            t2 = Transpose<perm = [0, 3, 1, 2]>(t1)
            d = Dropout(t2)
            r1 = Reshape(d, s1)
            r2 = Reshape(r1, s2)
            h = Div(r2, two)
            c1 = Cast<to = 11>(h)
            c2 = Cast<to = 1>(c1)
            a = Relu(c2)
            k = Clip(a, lo, hi)
            j = Concat<axis = 1>(k, b)
            y = Concat<axis = 1>(j, b2)
        }}""",
        s1=_ints64(4, 6),
        s2=_ints64(1, -1),
        two=np.array(2.0, np.float32),
        lo=np.array(-1.0, np.float32),
        hi=np.array(6.0, np.float32),
        b2=np.ones((1, 24), np.float32),
    )
    reference = snapshot(model)
    fuse = FusePass()
    fuse(model)
    assert op_types(model) == ["Reshape", "Mul", "Clip", "Concat"]
    assert model.graph.outputs[0].name == "y"
    assert_equivalent(reference, model)
    assert FusePass()(model).modified is False
