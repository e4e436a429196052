"""BatchNormalization folding: into Conv / ConvTranspose / Gemm / MatMul / BN before it, forward
into an unpadded Conv after it, and the BN-as-Mul+Add chains of the zoo's inception_v2 and
densenet121."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

from graphopt.model_io import resolve_model
from graphopt.pipeline import Pipeline

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
BN_FOLD = ("bn_fold", "bn_forward_conv", "mul_scale", "add_bias")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def bn_params(channels: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Non-trivial BatchNormalization parameters (negative scales included)."""
    rng = _rng(seed)
    return {
        "gamma": _f32(rng.uniform(-2.0, 2.0, channels)),
        "beta": _f32(rng.normal(0.0, 1.0, channels)),
        "mean": _f32(rng.normal(0.0, 1.0, channels)),
        "var": _f32(rng.uniform(0.1, 3.0, channels)),
    }


def conv_bn_model(*, group: int = 1, extra: str = "", outputs: str = "float[1,4,6,6] y"):
    cin, cout = 4, 4
    rng = _rng(2)
    return build(
        f"""{HEADER}
        g (float[1,{cin},8,8] x) => ({outputs}) {{
            c = Conv <kernel_shape = [3, 3], group = {group}> (x, w, b)
            y = BatchNormalization <epsilon = 0.001> (c, gamma, beta, mean, var)
            {extra}
        }}""",
        w=_f32(rng.normal(size=(cout, cin // group, 3, 3))),
        b=_f32(rng.normal(size=cout)),
        **bn_params(cout),
    )


@pytest.mark.parametrize("group", [1, 2, 4], ids=["dense", "grouped", "depthwise"])
def test_bn_folds_into_conv(group):
    model = conv_bn_model(group=group)
    reference = snapshot(model)
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Conv"]
    assert fuse.stats == {"bn_fold": 1}
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert set(model.graph.initializers) == {v.name for v in nodes_of(model, "Conv")[0].inputs[1:]}
    assert_equivalent(reference, model)


def test_bn_folds_into_conv_without_bias():
    rng = _rng(3)
    model = build(
        f"""{HEADER}
        g (float[1,3,5,5] x) => (float[1,2,5,5] y) {{
            c = Conv <kernel_shape = [1, 1]> (x, w)
            y = BatchNormalization (c, gamma, beta, mean, var)
        }}""",
        w=_f32(rng.normal(size=(2, 3, 1, 1))),
        **bn_params(2),
    )
    reference = snapshot(model)
    apply(model, *BN_FOLD)
    assert op_types(model) == ["Conv"]
    assert len(nodes_of(model, "Conv")[0].inputs) == 3
    assert_equivalent(reference, model)


@pytest.mark.parametrize("group", [1, 2])
def test_bn_folds_into_conv_transpose_with_its_weight_layout(group):
    rng = _rng(4)
    cin, cout = 4, 6
    model = build(
        f"""{HEADER}
        g (float[1,{cin},5,5] x) => (float[1,{cout},10,10] y) {{
            c = ConvTranspose <kernel_shape = [2, 2], strides = [2, 2], group = {group}> (x, w)
            y = BatchNormalization (c, gamma, beta, mean, var)
        }}""",
        w=_f32(rng.normal(size=(cin, cout // group, 2, 2))),
        **bn_params(cout),
    )
    reference = snapshot(model)
    apply(model, *BN_FOLD)
    assert op_types(model) == ["ConvTranspose"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("with_c", [True, False])
def test_bn_folds_into_gemm_columns(trans_b, with_c):
    rng = _rng(5)
    k, n = 6, 5
    weight = rng.normal(size=(n, k) if trans_b else (k, n))
    inputs = "x, w, c" if with_c else "x, w"
    model = build(
        f"""{HEADER}
        g (float[3,{k}] x) => (float[3,{n}] y) {{
            z = Gemm <transB = {trans_b}, alpha = 0.5, beta = 2.0> ({inputs})
            y = BatchNormalization (z, gamma, beta, mean, var)
        }}""",
        w=_f32(weight),
        **({"c": _f32(rng.normal(size=n))} if with_c else {}),
        **bn_params(n),
    )
    reference = snapshot(model)
    apply(model, *BN_FOLD)
    assert op_types(model) == ["Gemm"]
    assert_equivalent(reference, model)


def test_bn_after_2d_matmul_becomes_gemm():
    rng = _rng(6)
    model = build(
        f"""{HEADER}
        g (float[3,6] x) => (float[3,5] y) {{
            z = MatMul (x, w)
            y = BatchNormalization (z, gamma, beta, mean, var)
        }}""",
        w=_f32(rng.normal(size=(6, 5))),
        **bn_params(5),
    )
    reference = snapshot(model)
    apply(model, *BN_FOLD)
    assert op_types(model) == ["Gemm"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(reference, model)


def test_bn_after_rank3_matmul_declines_on_the_axis():
    rng = _rng(7)
    model = build(
        f"""{HEADER}
        g (float[2,5,6] x) => (float[2,5,5] y) {{
            z = MatMul (x, w)
            y = BatchNormalization (z, gamma, beta, mean, var)
        }}""",
        w=_f32(rng.normal(size=(6, 5))),
        **bn_params(5),
    )
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["MatMul", "BatchNormalization"]
    assert any("normalises axis 1" in text and "axis 2" in text for text in declines(fuse))


def test_conv_bn_mul_add_chain_becomes_one_conv():
    """inception_v2 / densenet121: Conv -> BatchNormalization -> Mul -> Add [C,1,1] -> Relu,
    with the constants on either side of Mul and Add."""
    rng = _rng(8)
    model = build(
        f"""{HEADER}
        g (float[1,4,8,8] x) => (float[1,4,6,6] r) {{
            c = Conv <kernel_shape = [3, 3]> (x, w, b)
            n = BatchNormalization <epsilon = 0.001> (c, gamma, beta, mean, var)
            m = Mul (n, k)
            a = Add (kk, m)
            r = Relu (a)
        }}""",
        w=_f32(rng.normal(size=(4, 4, 3, 3))),
        b=_f32(rng.normal(size=4)),
        k=_f32(rng.normal(size=(4, 1, 1))),
        kk=_f32(rng.normal(size=(4, 1, 1))),
        **bn_params(4),
    )
    reference = snapshot(model)
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Conv", "Relu"]
    assert fuse.stats == {"bn_fold": 1}
    assert len(model.graph.initializers) == 2
    assert_equivalent(reference, model)


def test_pre_activation_bn_mul_add_merges_into_one_bn():
    """densenet121: Concat -> BatchNormalization -> Mul -> Add -> Relu -> Conv."""
    rng = _rng(9)
    model = build(
        f"""{HEADER}
        g (float[1,2,5,5] x, float[1,2,5,5] x2) => (float[1,3,3,3] y) {{
            c = Concat <axis = 1> (x, x2)
            n = BatchNormalization (c, gamma, beta, mean, var)
            m = Mul (n, k)
            a = Add (m, kk)
            r = Relu (a)
            y = Conv <kernel_shape = [3, 3]> (r, w)
        }}""",
        k=_f32(rng.normal(size=(4, 1, 1))),
        kk=_f32(rng.normal(size=(4, 1, 1))),
        w=_f32(rng.normal(size=(3, 4, 3, 3))),
        **bn_params(4),
    )
    reference = snapshot(model)
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Concat", "BatchNormalization", "Relu", "Conv"]
    assert fuse.stats == {"mul_scale": 1}
    assert any("BatchNormalization after Concat: nothing to fold into" in t for t in declines(fuse))
    assert_equivalent(reference, model)


@pytest.mark.parametrize("group", [1, 2])
def test_bn_folds_forward_into_unpadded_conv(group):
    rng = _rng(10)
    model = build(
        f"""{HEADER}
        g (float[1,4,5,5] x) => (float[1,6,5,5] y) {{
            r = Relu (x)
            n = BatchNormalization (r, gamma, beta, mean, var)
            y = Conv <kernel_shape = [1, 1], group = {group}> (n, w, b)
        }}""",
        w=_f32(rng.normal(size=(6, 4 // group, 1, 1))),
        b=_f32(rng.normal(size=6)),
        **bn_params(4),
    )
    reference = snapshot(model)
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Relu", "Conv"]
    assert fuse.stats == {"bn_forward_conv": 1}
    assert_equivalent(reference, model)


def test_bn_does_not_fold_forward_into_padded_conv():
    rng = _rng(11)
    model = build(
        f"""{HEADER}
        g (float[1,4,5,5] x) => (float[1,2,5,5] y) {{
            r = Relu (x)
            n = BatchNormalization (r, gamma, beta, mean, var)
            y = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (n, w)
        }}""",
        w=_f32(rng.normal(size=(2, 4, 3, 3))),
        **bn_params(4),
    )
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Relu", "BatchNormalization", "Conv"]
    assert any("BatchNormalization after Relu: nothing to fold into" in t for t in declines(fuse))
    assert any("pads its input" in text for text in declines(fuse))


def _declined_with(model: ir.Model, text: str) -> None:
    fuse = apply(model, *BN_FOLD)
    assert "BatchNormalization" in op_types(model)
    assert any(text in line for line in declines(fuse)), declines(fuse)


def test_declines_when_conv_output_has_a_second_consumer():
    _declined_with(
        conv_bn_model(extra="z = Relu (c)", outputs="float[1,4,6,6] y, float[1,4,6,6] z"),
        "also used elsewhere or is a graph output",
    )


def test_declines_when_conv_output_is_a_graph_output():
    _declined_with(
        conv_bn_model(outputs="float[1,4,6,6] y, float[1,4,6,6] c"),
        "also used elsewhere or is a graph output",
    )


def test_declines_when_bn_parameters_are_graph_inputs():
    rng = _rng(12)
    model = build(
        f"""{HEADER}
        g (float[1,2,4,4] x, float[2] gamma) => (float[1,2,4,4] y) {{
            c = Conv <kernel_shape = [1, 1]> (x, w)
            y = BatchNormalization (c, gamma, beta, mean, var)
        }}""",
        w=_f32(rng.normal(size=(2, 2, 1, 1))),
        **bn_params(2),
    )
    _declined_with(model, "BatchNormalization parameters are not initializers")


def test_declines_when_conv_weight_is_a_graph_input():
    model = build(
        f"""{HEADER}
        g (float[1,2,4,4] x, float[2,2,1,1] w) => (float[1,2,4,4] y) {{
            c = Conv <kernel_shape = [1, 1]> (x, w)
            y = BatchNormalization (c, gamma, beta, mean, var)
        }}""",
        **bn_params(2),
    )
    _declined_with(model, "BatchNormalization after Conv: Conv weight is not an initializer")


def test_declines_in_training_mode():
    model = build(
        f"""{HEADER}
        g (float[1,4,8,8] x) => (float[1,4,6,6] y) {{
            c = Conv <kernel_shape = [3, 3]> (x, w)
            y, rm, rv = BatchNormalization <training_mode = 1> (c, gamma, beta, mean, var)
        }}""",
        w=_f32(_rng(13).normal(size=(4, 4, 3, 3))),
        **bn_params(4),
    )
    _declined_with(model, "training mode")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "limit"), [("inception_v2", 163), ("densenet121", 490)])
def test_lossless_preset_beats_peer_node_counts(name, limit):
    model = resolve_model(f"zoo:{name}")
    report = Pipeline.from_spec("lossless").run(model)
    assert report.output_cost.nodes <= limit
    assert report.fidelity.max_rel <= 1e-4


def test_pre_activation_bn_mul_add_folds_forward_into_a_1x1_conv():
    """Concat -> BatchNormalization -> Mul -> Add -> 1x1 Conv (no Relu between): one Conv left."""
    rng = _rng(14)
    model = build(
        f"""{HEADER}
        g (float[1,2,5,5] x, float[1,2,5,5] x2) => (float[1,3,5,5] y) {{
            c = Concat <axis = 1> (x, x2)
            n = BatchNormalization (c, gamma, beta, mean, var)
            m = Mul (n, k)
            a = Add (m, kk)
            y = Conv <kernel_shape = [1, 1]> (a, w)
        }}""",
        k=_f32(rng.normal(size=(4, 1, 1))),
        kk=_f32(rng.normal(size=(4, 1, 1))),
        w=_f32(rng.normal(size=(3, 4, 1, 1))),
        **bn_params(4),
    )
    reference = snapshot(model)
    fuse = apply(model, *BN_FOLD)
    assert op_types(model) == ["Concat", "Conv"]
    assert fuse.stats == {"mul_scale": 1, "bn_forward_conv": 1}
    assert len(model.graph.initializers) == 2
    assert_equivalent(reference, model)
