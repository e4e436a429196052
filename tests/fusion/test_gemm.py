"""Gemm formation: 2-D MatMul + Add -> Gemm (both operand orders) and 2-D Transposes folded into
transA / transB, with the cases that must stay as they are."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _weights(seed: int = 0, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


@pytest.mark.parametrize("operands", ["z, c", "c, z"])
@pytest.mark.parametrize("bias_shape", [(5,), (1, 5), (3, 1), (3, 5)])
def test_matmul_add_becomes_gemm(operands, bias_shape):
    model = build(
        f"""{HEADER}
        g (float[3,4] x) => (float[3,5] y) {{
            z = MatMul (x, w)
            y = Add ({operands})
        }}""",
        **_weights(1, w=(4, 5), c=bias_shape),
    )
    reference = snapshot(model)
    fuse = apply(model, "matmul_add_to_gemm")
    assert op_types(model) == ["Gemm"]
    assert fuse.stats == {"matmul_add_to_gemm": 1}
    assert [v.name for v in nodes_of(model, "Gemm")[0].inputs] == ["x", "w", "c"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(reference, model)


def test_activation_bias_is_allowed():
    model = build(
        f"""{HEADER}
        g (float[3,4] x, float[3,5] s) => (float[3,5] y) {{
            z = MatMul (x, w)
            y = Add (s, z)
        }}""",
        **_weights(2, w=(4, 5)),
    )
    reference = snapshot(model)
    apply(model, "matmul_add_to_gemm")
    assert op_types(model) == ["Gemm"]
    assert_equivalent(reference, model)


def test_rank3_matmul_declines():
    model = build(
        f"""{HEADER}
        g (float[2,3,4] x) => (float[2,3,5] y) {{
            z = MatMul (x, w)
            y = Add (z, c)
        }}""",
        **_weights(3, w=(4, 5), c=(5,)),
    )
    fuse = apply(model, "matmul_add_to_gemm")
    assert op_types(model) == ["MatMul", "Add"]
    assert any("MatMul operands are not both known to be 2-D" in t for t in declines(fuse))


def test_bias_that_grows_the_result_declines():
    model = build(
        f"""{HEADER}
        g (float[3,4] x) => (float[2,3,5] y) {{
            z = MatMul (x, w)
            y = Add (z, c)
        }}""",
        **_weights(4, w=(4, 5), c=(2, 1, 5)),
    )
    fuse = apply(model, "matmul_add_to_gemm")
    assert op_types(model) == ["MatMul", "Add"]
    assert any("does not broadcast onto [M, N]" in t for t in declines(fuse))


@pytest.mark.parametrize("outputs", ["float[3,5] y, float[3,5] z", "float[3,5] y, float[3,5] r"])
def test_matmul_output_used_elsewhere_declines(outputs):
    model = build(
        f"""{HEADER}
        g (float[3,4] x) => ({outputs}) {{
            z = MatMul (x, w)
            y = Add (z, c)
            r = Relu (z)
        }}""",
        **_weights(5, w=(4, 5), c=(5,)),
    )
    fuse = apply(model, "matmul_add_to_gemm")
    assert "Gemm" not in op_types(model)
    assert any("MatMul output is also used elsewhere" in t for t in declines(fuse))


@pytest.mark.parametrize("trans_b", [0, 1])
def test_transposes_fold_into_gemm_flags(trans_b):
    weight = (5, 4) if trans_b else (4, 5)
    model = build(
        f"""{HEADER}
        g (float[4,3] x, float[{weight[1]},{weight[0]}] v) => (float[3,5] y) {{
            a = Transpose <perm = [1, 0]> (x)
            b = Transpose (v)
            y = Gemm <transB = {trans_b}> (a, b, c)
        }}""",
        **_weights(6, c=(5,)),
    )
    reference = snapshot(model)
    fuse = apply(model, "transpose_into_gemm")
    assert op_types(model) == ["Gemm"]
    assert fuse.stats == {"transpose_into_gemm": 1}
    gemm = nodes_of(model, "Gemm")[0]
    assert gemm.attributes.get_int("transA", 0) == 1
    assert gemm.attributes.get_int("transB", 0) == 1 - trans_b
    assert_equivalent(reference, model)


def test_transposed_operand_of_2d_matmul_makes_a_gemm():
    model = build(
        f"""{HEADER}
        g (float[3,4] x, float[5,4] v) => (float[3,5] y) {{
            b = Transpose (v)
            y = MatMul (x, b)
        }}"""
    )
    reference = snapshot(model)
    apply(model, "transpose_into_gemm")
    assert op_types(model) == ["Gemm"]
    assert nodes_of(model, "Gemm")[0].attributes.get_int("transB", 0) == 1
    assert_equivalent(reference, model)


def test_transpose_with_another_reader_stays():
    model = build(
        f"""{HEADER}
        g (float[4,3] x) => (float[3,5] y, float[3,4] t) {{
            t = Transpose (x)
            y = Gemm (t, w)
        }}""",
        **_weights(7, w=(4, 5)),
    )
    fuse = apply(model, "transpose_into_gemm")
    assert op_types(model) == ["Transpose", "Gemm"]
    assert fuse.stats == {}


def test_transpose_into_rank3_matmul_declines():
    model = build(
        f"""{HEADER}
        g (float[2,4,3] x, float[2,4,5] w) => (float[2,3,5] y) {{
            t = Transpose <perm = [0, 2, 1]> (x)
            y = MatMul (t, w)
        }}"""
    )
    fuse = apply(model, "transpose_into_gemm")
    assert op_types(model) == ["Transpose", "MatMul"]
    assert declines(fuse) == []


def test_matmul_add_then_transposes_reach_one_gemm():
    model = build(
        f"""{HEADER}
        g (float[4,3] x) => (float[3,5] y) {{
            a = Transpose (x)
            z = MatMul (a, w)
            y = Add (z, c)
        }}""",
        **_weights(8, w=(4, 5), c=(5,)),
    )
    reference = snapshot(model)
    apply(model, "matmul_add_to_gemm", "transpose_into_gemm")
    assert op_types(model) == ["Gemm"]
    assert_equivalent(reference, model)


def test_gemm_without_c_takes_the_add():
    model = build(
        f"""{HEADER}
        g (float[4,3] x, float[3,5] s) => (float[3,5] y) {{
            z = Gemm <transA = 1, alpha = 0.5, beta = 3.0> (x, w)
            y = Add (s, z)
        }}""",
        **_weights(9, w=(4, 5)),
    )
    reference = snapshot(model)
    apply(model, "matmul_add_to_gemm")
    assert op_types(model) == ["Gemm"]
    gemm = nodes_of(model, "Gemm")[0]
    assert gemm.attributes.get_int("transA", 0) == 1
    assert gemm.attributes.get_float("beta", 1.0) == 1.0
    assert_equivalent(reference, model)
