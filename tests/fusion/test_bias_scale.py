"""Add / Mul of a per-channel constant folded into the producing Conv, ConvTranspose, Gemm,
MatMul or BatchNormalization, in both operand orders, and the unsafe variants that must stay."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
RULES = ("add_bias", "mul_scale")


def _f32(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def _weights(seed: int = 0, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: _f32(rng.normal(size=shape)) for name, shape in shapes.items()}


def conv_then(
    op: str,
    order: str,
    *,
    const_shape=(3, 1, 1),
    bias: bool = True,
    inputs: str = "",
    outputs: str = "float[1,3,4,4] y",
    extra: str = "",
):
    """Conv(x) followed by ``op`` with the constant ``k`` on the side given by ``order``."""
    operands = "c, k" if order == "conv_first" else "k, c"
    conv_inputs = "x, w, b" if bias else "x, w"
    return build(
        f"""{HEADER}
        g (float[1,2,6,6] x{inputs}) => ({outputs}) {{
            c = Conv <kernel_shape = [3, 3]> ({conv_inputs})
            y = {op} ({operands})
            {extra}
        }}""",
        **_weights(1, w=(3, 2, 3, 3), b=(3,), k=const_shape),
    )


@pytest.mark.parametrize("order", ["conv_first", "const_first"])
@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("bias", [True, False])
def test_per_channel_constant_folds_into_conv(op, order, bias):
    model = conv_then(op, order, bias=bias)
    reference = snapshot(model)
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv"]
    assert fuse.stats == {"add_bias" if op == "Add" else "mul_scale": 1}
    assert [v.name for v in model.graph.outputs] == ["y"]
    conv = nodes_of(model, "Conv")[0]
    assert len(conv.inputs) == (3 if bias or op == "Add" else 2)
    assert_equivalent(reference, model)


@pytest.mark.parametrize("shape", [(), (1,), (1, 3, 1, 1)], ids=["scalar", "one", "nchw"])
def test_broadcast_forms_of_a_per_channel_constant_fold(shape):
    model = conv_then("Mul", "conv_first", const_shape=shape)
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["Conv"]
    assert_equivalent(reference, model)


def test_conv_mul_add_chain_folds_once():
    model = conv_then("Mul", "conv_first", outputs="float[1,3,4,4] z", extra="z = Add (y, k)")
    reference = snapshot(model)
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv"]
    assert fuse.stats == {"mul_scale": 1}
    assert_equivalent(reference, model)


def test_constant_varying_over_space_declines():
    model = conv_then("Add", "conv_first", const_shape=(3, 4, 4))
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Add"]
    assert any("Add constant of shape [3, 4, 4] is not per-channel" in t for t in declines(fuse))


def test_constant_that_grows_the_output_declines():
    model = conv_then(
        "Add", "conv_first", const_shape=(2, 1, 1, 1, 1), outputs="float[2,1,3,4,4] y"
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Add"]
    assert any("is not per-channel" in t for t in declines(fuse))


def test_constant_that_is_a_graph_input_declines():
    model = conv_then("Mul", "const_first", inputs=", float[3,1,1] k")
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Mul"]
    assert any("operand k is a graph input, not a constant" in t for t in declines(fuse))


def test_activation_operand_is_not_a_candidate():
    model = build(
        f"""{HEADER}
        g (float[1,2,6,6] x, float[1,3,4,4] s) => (float[1,3,4,4] y) {{
            c = Conv <kernel_shape = [3, 3]> (x, w)
            y = Add (c, s)
        }}""",
        **_weights(2, w=(3, 2, 3, 3)),
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Add"]
    assert declines(fuse) == []


def test_conv_output_with_second_consumer_declines():
    model = conv_then(
        "Add", "conv_first", outputs="float[1,3,4,4] y, float[1,3,4,4] r", extra="r = Relu (c)"
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Add", "Relu"]
    assert any("Conv output is also used elsewhere" in t for t in declines(fuse))


def test_conv_output_that_is_a_graph_output_declines():
    model = conv_then("Mul", "conv_first", outputs="float[1,3,4,4] y, float[1,3,4,4] c")
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Mul"]
    assert any("or is a graph output" in t for t in declines(fuse))


def test_shared_weight_is_copied_not_changed():
    model = build(
        f"""{HEADER}
        g (float[1,2,6,6] x) => (float[1,3,4,4] y, float[1,3,4,4] z) {{
            c = Conv <kernel_shape = [3, 3]> (x, w)
            y = Mul (c, k)
            z = Conv <kernel_shape = [3, 3]> (x, w)
        }}""",
        **_weights(3, w=(3, 2, 3, 3), k=(3, 1, 1)),
    )
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["Conv", "Conv"]
    assert nodes_of(model, "Conv")[1].inputs[1].name == "w"
    assert_equivalent(reference, model)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_takes_column_scale_and_bias(trans_b):
    weight = (5, 4) if trans_b else (4, 5)
    model = build(
        f"""{HEADER}
        g (float[2,4] x) => (float[2,5] y) {{
            z = Gemm <transB = {trans_b}, beta = 0.5> (x, w, c)
            m = Mul (z, k)
            y = Add (kk, m)
        }}""",
        **_weights(4, w=weight, c=(5,), k=(5,), kk=(1, 5)),
    )
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["Gemm"]
    assert_equivalent(reference, model)


def test_matmul_of_any_rank_takes_a_column_scale():
    model = build(
        f"""{HEADER}
        g (float[2,3,4] x) => (float[2,3,5] y) {{
            z = MatMul (x, w)
            y = Mul (k, z)
        }}""",
        **_weights(5, w=(4, 5), k=(5,)),
    )
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["MatMul"]
    assert_equivalent(reference, model)


def test_matmul_scale_over_rows_declines():
    model = build(
        f"""{HEADER}
        g (float[2,3,4] x) => (float[2,3,5] y) {{
            z = MatMul (x, w)
            y = Mul (z, k)
        }}""",
        **_weights(6, w=(4, 5), k=(3, 1)),
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["MatMul", "Mul"]
    assert any("channels on axis 2" in t for t in declines(fuse))


def test_matmul_add_is_left_to_gemm_formation():
    model = build(
        f"""{HEADER}
        g (float[3,4] x) => (float[3,5] y) {{
            z = MatMul (x, w)
            y = Add (z, k)
        }}""",
        **_weights(7, w=(4, 5), k=(5,)),
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["MatMul", "Add"]
    assert declines(fuse) == []


def test_conv_transpose_takes_scale_and_shift():
    model = build(
        f"""{HEADER}
        g (float[1,4,3,3] x) => (float[1,6,6,6] y) {{
            c = ConvTranspose <kernel_shape = [2, 2], strides = [2, 2], group = 2> (x, w, b)
            m = Mul (c, k)
            y = Add (m, kk)
        }}""",
        **_weights(8, w=(4, 3, 2, 2), b=(6,), k=(6, 1, 1), kk=(6, 1, 1)),
    )
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["ConvTranspose"]
    assert_equivalent(reference, model)


def test_mul_add_after_batchnorm_merge_into_it():
    rng = np.random.default_rng(9)
    model = build(
        f"""{HEADER}
        g (float[1,3,4,4] x) => (float[1,3,4,4] y) {{
            r = Relu (x)
            n = BatchNormalization (r, gamma, beta, mean, var)
            m = Mul (k, n)
            y = Add (m, kk)
        }}""",
        gamma=_f32(rng.normal(size=3)),
        beta=_f32(rng.normal(size=3)),
        mean=_f32(rng.normal(size=3)),
        var=_f32(rng.uniform(0.5, 2.0, size=3)),
        **_weights(10, k=(3, 1, 1), kk=(3, 1, 1)),
    )
    reference = snapshot(model)
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Relu", "BatchNormalization"]
    assert fuse.stats == {"mul_scale": 1}
    assert sorted(model.graph.initializers) == sorted(
        v.name for v in nodes_of(model, "BatchNormalization")[0].inputs[1:]
    )
    assert_equivalent(reference, model)


def test_mul_after_relu_explains_itself():
    model = build(
        f"""{HEADER}
        g (float[1,3,4,4] x) => (float[1,3,4,4] y) {{
            r = Relu (x)
            y = Mul (r, k)
        }}""",
        **_weights(11, k=(3, 1, 1)),
    )
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Relu", "Mul"]
    assert any("Mul after Relu: nothing to fold into" in t for t in declines(fuse))
