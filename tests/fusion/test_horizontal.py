"""Horizontal fusion: sibling Convs -> one Conv + Split, identical activations hoisted above a
Split, and the cases that must stay."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
RULES = ("conv_siblings", "split_activation")


def _weights(seed: int = 0, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def _siblings(count: int, *, activation: str = "Relu", header: str = HEADER, bias: bool = True):
    """``count`` 1x1 Convs of 4 channels on x, each followed by ``activation``."""
    lines, outputs, weights = [], [], {}
    for i in range(count):
        inputs = f"x, w{i}, b{i}" if bias else f"x, w{i}"
        lines.append(f"c{i} = Conv <kernel_shape = [1, 1]> ({inputs})")
        if activation:
            lines.append(f"y{i} = {activation} (c{i})")
        else:
            lines.append(f"y{i} = Identity (c{i})")
        outputs.append(f"float[1,4,5,5] y{i}")
        weights[f"w{i}"] = (4, 3, 1, 1)
        weights[f"b{i}"] = (4,)
    body = "\n".join(lines)
    return build(
        f"""{header}
        g (float[1,3,5,5] x) => ({", ".join(outputs)}) {{
            {body}
        }}""",
        **{k: v for k, v in _weights(1, **weights).items() if bias or k.startswith("w")},
    )


def test_three_sibling_convs_with_relus_become_conv_relu_split():
    model = _siblings(3)
    reference = snapshot(model)
    fuse = apply(model, *RULES)
    assert op_types(model) == ["Conv", "Relu", "Split"]
    assert fuse.stats == {"conv_siblings": 1, "split_activation": 1}
    assert [v.name for v in model.graph.outputs] == ["y0", "y1", "y2"]
    assert nodes_of(model, "Conv")[0].inputs[1].shape == (12, 3, 1, 1)
    assert len(nodes_of(model, "Split")[0].inputs) == 1
    assert_equivalent(reference, model)


def test_two_siblings_sharing_an_activation_merge():
    model = _siblings(2, activation="Sigmoid")
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["Conv", "Sigmoid", "Split"]
    assert_equivalent(reference, model)


def test_two_siblings_without_a_shared_activation_decline():
    model = _siblings(2, activation="")
    fuse = apply(model, "conv_siblings")
    assert op_types(model).count("Conv") == 2
    assert any("would not save a node" in t for t in declines(fuse))


def test_siblings_without_any_bias_merge_without_bias():
    model = _siblings(3, bias=False)
    reference = snapshot(model)
    apply(model, *RULES)
    assert len(nodes_of(model, "Conv")[0].inputs) == 2
    assert_equivalent(reference, model)


def test_opset_11_model_gets_an_equal_split():
    model = _siblings(3, header='<ir_version: 7, opset_import: ["" : 11]>')
    reference = snapshot(model)
    apply(model, *RULES)
    assert op_types(model) == ["Conv", "Relu", "Split"]
    assert "split" not in nodes_of(model, "Split")[0].attributes
    assert_equivalent(reference, model)


def test_siblings_of_different_widths_or_bias_stay_apart():
    """Unequal widths would need a sizes tensor, a missing bias zeros: both add parameters."""
    model = build(
        f"""{HEADER}
        g (float[1,3,5,5] x) => (float[1,2,5,5] a, float[1,3,5,5] b, float[1,2,5,5] c) {{
            a = Conv <kernel_shape = [1, 1]> (x, w0, b0)
            b = Conv <kernel_shape = [1, 1]> (x, w1, b1)
            c = Conv <kernel_shape = [1, 1]> (x, w2)
        }}""",
        **_weights(5, w0=(2, 3, 1, 1), b0=(2,), w1=(3, 3, 1, 1), b1=(3,), w2=(2, 3, 1, 1)),
    )
    apply(model, *RULES)
    assert op_types(model) == ["Conv", "Conv", "Conv"]


def test_convs_with_different_kernels_stay_apart():
    model = build(
        f"""{HEADER}
        g (float[1,3,5,5] x) => (float[1,2,5,5] a, float[1,2,5,5] b, float[1,2,5,5] c) {{
            a = Conv <kernel_shape = [1, 1]> (x, w0)
            b = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (x, w1)
            c = Conv <kernel_shape = [1, 1], strides = [1, 1]> (x, w2)
        }}""",
        **_weights(2, w0=(2, 3, 1, 1), w1=(2, 3, 3, 3), w2=(2, 3, 1, 1)),
    )
    apply(model, *RULES)
    assert op_types(model) == ["Conv", "Conv", "Conv"]


def test_weight_from_a_graph_input_is_not_merged():
    model = build(
        f"""{HEADER}
        g (float[1,3,5,5] x, float[2,3,1,1] w0) => (float[1,2,5,5] a, float[1,2,5,5] b,
                                                     float[1,2,5,5] c) {{
            a = Conv <kernel_shape = [1, 1]> (x, w0)
            b = Conv <kernel_shape = [1, 1]> (x, w1)
            c = Conv <kernel_shape = [1, 1]> (x, w2)
        }}""",
        **_weights(3, w1=(2, 3, 1, 1), w2=(2, 3, 1, 1)),
    )
    reference = snapshot(model)
    apply(model, "conv_siblings")
    assert op_types(model) == ["Conv", "Conv", "Conv"]
    assert_equivalent(reference, model)


def test_batchnorm_folds_before_siblings_merge():
    rng = np.random.default_rng(4)
    lines = []
    params = {}
    for i in range(3):
        lines.append(f"c{i} = Conv <kernel_shape = [1, 1]> (x, w{i})")
        lines.append(f"n{i} = BatchNormalization (c{i}, g{i}, be{i}, m{i}, v{i})")
        lines.append(f"y{i} = Relu (n{i})")
        params.update(
            {
                f"w{i}": rng.normal(size=(2, 3, 1, 1)),
                f"g{i}": rng.normal(size=2),
                f"be{i}": rng.normal(size=2),
                f"m{i}": rng.normal(size=2),
                f"v{i}": rng.uniform(0.5, 2, size=2),
            }
        )
    body = "\n".join(lines)
    model = build(
        f"""{HEADER}
        g (float[1,3,5,5] x) => (float[1,2,5,5] y0, float[1,2,5,5] y1, float[1,2,5,5] y2) {{
            {body}
        }}""",
        **{k: v.astype(np.float32) for k, v in params.items()},
    )
    reference = snapshot(model)
    fuse = apply(model, "bn_fold", *RULES)
    assert op_types(model) == ["Conv", "Relu", "Split"]
    assert fuse.stats == {"bn_fold": 3, "conv_siblings": 1, "split_activation": 1}
    assert_equivalent(reference, model)


@pytest.mark.parametrize(
    ("second", "hoisted"), [("Relu", True), ("Sigmoid", False), ("LeakyRelu <alpha = 0.2>", False)]
)
def test_split_activation_needs_the_same_op_everywhere(second, hoisted):
    model = build(
        f"""{HEADER}
        g (float[1,4,3] x) => (float[1,2,3] a, float[1,2,3] b) {{
            s0, s1 = Split <axis = 1> (x, sizes)
            a = Relu (s0)
            b = {second} (s1)
        }}""",
        sizes=np.array([2, 2], dtype=np.int64),
    )
    reference = snapshot(model)
    apply(model, "split_activation")
    assert (op_types(model)[0] == "Relu") is hoisted
    assert [v.name for v in model.graph.outputs] == ["a", "b"]
    assert_equivalent(reference, model)


def test_split_output_with_a_second_reader_keeps_its_activation():
    model = build(
        f"""{HEADER}
        g (float[1,4,3] x) => (float[1,2,3] a, float[1,2,3] b, float[1,2,3] s1) {{
            s0, s1 = Split <axis = 1> (x, sizes)
            a = Relu (s0)
            b = Relu (s1)
        }}""",
        sizes=np.array([2, 2], dtype=np.int64),
    )
    apply(model, "split_activation")
    assert op_types(model) == ["Split", "Relu", "Relu"]
