"""Clip/Relu merge rules."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _scalar(value: float) -> np.ndarray:
    return np.array(value, np.float32)


def _bounds(clip) -> tuple:
    def read(index):
        if len(clip.inputs) <= index or clip.inputs[index] is None:
            return None
        return float(clip.inputs[index].const_value.numpy())

    return read(1), read(2)


def test_relu_of_relu_removed_and_output_name_kept():
    model = build(
        f"""{HEADER}
        g (float[2,5] x) => (float[2,5] y) {{
            a = Relu(x)
            y = Relu(a)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "relu_relu")
    assert op_types(model) == ["Relu"]
    assert model.graph.outputs[0].name == "y"
    assert fuse.stats == {"relu_relu": 1}
    assert_equivalent(reference, model)


def test_relu_of_relu_when_both_are_outputs_declines():
    model = build(
        f"""{HEADER}
        g (float[3] x) => (float[3] a, float[3] y) {{
            a = Relu(x)
            y = Relu(a)
        }}"""
    )
    fuse = apply(model, "relu_relu")
    assert op_types(model) == ["Relu", "Relu"]
    assert any("both graph outputs" in line for line in declines(fuse))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(-1.0, 6.0, (0.0, 6.0)), (None, 6.0, (0.0, 6.0)), (-2.0, None, (0.0, None))],
)
def test_relu_after_clip_raises_min(low, high, expected):
    lo = "lo" if low is not None else ""
    hi = ", hi" if high is not None else ""
    model = build(
        f"""{HEADER}
        g (float[4,6] x) => (float[4,6] y) {{
            c = Clip(x, {lo}{hi})
            y = Relu(c)
        }}""",
        **({"lo": _scalar(low)} if low is not None else {}),
        **({"hi": _scalar(high)} if high is not None else {}),
    )
    reference = snapshot(model)
    apply(model, "clip_relu")
    (clip,) = nodes_of(model, "Clip")
    assert op_types(model) == ["Clip"]
    assert clip.inputs[0].name == "x"
    assert _bounds(clip) == expected
    assert model.graph.outputs[0].name == "y"
    x = np.linspace(-9, 9, 24, dtype=np.float32).reshape(4, 6)
    assert_equivalent(reference, model, inputs={"x": x})


def test_relu_after_non_negative_clip_is_dropped_even_when_clip_is_shared():
    model = build(
        f"""{HEADER}
        g (float[8] x) => (float[8] y, float[8] z) {{
            c = Clip(x, lo, hi)
            y = Relu(c)
            z = Neg(c)
        }}""",
        lo=_scalar(0.5),
        hi=_scalar(2.0),
    )
    reference = snapshot(model)
    apply(model, "clip_relu")
    assert op_types(model) == ["Clip", "Neg"]
    assert_equivalent(reference, model)


def test_relu_after_shared_or_negative_clip_declines():
    model = build(
        f"""{HEADER}
        g (float[8] x) => (float[8] y, float[8] z, float[8] w) {{
            c = Clip(x, lo, hi)
            y = Relu(c)
            z = Neg(c)
            d = Clip(x, lo, neg)
            w = Relu(d)
        }}""",
        lo=_scalar(-1.0),
        hi=_scalar(2.0),
        neg=_scalar(-0.5),
    )
    fuse = apply(model, "clip_relu")
    assert op_types(model).count("Relu") == 2
    reasons = declines(fuse)
    assert any("the Clip has other consumers" in line for line in reasons)
    assert any("Clip max -0.5 < 0" in line for line in reasons)


def test_clip_after_relu_absorbs_it():
    model = build(
        f"""{HEADER}
        g (float[16] x) => (float[16] y) {{
            r = Relu(x)
            y = Clip(r, lo, hi)
        }}""",
        lo=_scalar(-3.0),
        hi=_scalar(6.0),
    )
    reference = snapshot(model)
    fuse = apply(model, "relu_clip")
    (clip,) = nodes_of(model, "Clip")
    assert op_types(model) == ["Clip"]
    assert _bounds(clip) == (0.0, 6.0)
    assert set(model.graph.initializers) == {clip.inputs[1].name, clip.inputs[2].name}
    assert fuse.stats == {"relu_clip": 1}
    assert_equivalent(reference, model, inputs={"x": np.linspace(-8, 8, 16, dtype=np.float32)})


def test_clip_after_shared_relu_declines():
    model = build(
        f"""{HEADER}
        g (float[4] x) => (float[4] y, float[4] r) {{
            r = Relu(x)
            y = Clip(r, lo, hi)
        }}""",
        lo=_scalar(0.0),
        hi=_scalar(6.0),
    )
    fuse = apply(model, "relu_clip")
    assert op_types(model) == ["Relu", "Clip"]
    assert any("the Relu has other consumers" in line for line in declines(fuse))


def test_clip_of_clip_intersects_ranges():
    model = build(
        f"""{HEADER}
        g (float[3,4] x) => (float[3,4] y) {{
            a = Clip(x, lo1, hi1)
            y = Clip(a, lo2)
        }}""",
        lo1=_scalar(-4.0),
        hi1=_scalar(3.0),
        lo2=_scalar(-1.0),
    )
    reference = snapshot(model)
    apply(model, "clip_clip")
    (clip,) = nodes_of(model, "Clip")
    assert clip.inputs[0].name == "x"
    assert _bounds(clip) == (-1.0, 3.0)
    x = np.linspace(-6, 6, 12, dtype=np.float32).reshape(3, 4)
    assert_equivalent(reference, model, inputs={"x": x})


@pytest.mark.parametrize(
    ("extra_inputs", "body", "reason"),
    [
        ("", "a = Clip(x, lo1, hi1)  y = Clip(a, lo2)", "do not intersect"),
        (", float b", "a = Clip(x, lo1, hi1)  y = Clip(a, b)", "is not a constant initializer"),
    ],
)
def test_clip_of_clip_declines(extra_inputs, body, reason):
    model = build(
        f"{HEADER} g (float[3] x{extra_inputs}) => (float[3] y) {{ {body} }}",
        lo1=_scalar(-4.0),
        hi1=_scalar(3.0),
        lo2=_scalar(5.0),
    )
    fuse = apply(model, "clip_clip")
    assert op_types(model) == ["Clip", "Clip"]
    assert any(reason in line for line in declines(fuse))


def test_clip_with_attribute_bounds_declines():
    model = build(
        """<ir_version: 8, opset_import: ["" : 10]>
        g (float[3] x) => (float[3] y) {
            r = Relu(x)
            y = Clip<min = -1.0, max = 1.0>(r)
        }"""
    )
    fuse = apply(model, "relu_clip")
    assert op_types(model) == ["Relu", "Clip"]
    assert any("attributes (opset < 11)" in line for line in declines(fuse))
