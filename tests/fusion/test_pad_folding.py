"""Pad folded into Conv / AveragePool / MaxPool pads where the padding means the same thing, and
explained declines where it does not."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, declines, nodes_of, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
RULES = ("pad_into_conv", "pad_into_pool")
PADS = np.array([0, 0, 1, 2, 0, 0, 2, 1], dtype=np.int64)  # H/W begin (1, 2), end (2, 1)


def _pad_model(
    consumer: str,
    *,
    value: float | None = 0.0,
    mode: str = "constant",
    pads: np.ndarray = PADS,
    source: str = "Relu",
    outputs: str = "float[1,2,?,?] y",
    inputs: str = "",
    extra: str = "",
    **initializers: np.ndarray,
):
    value_input = ", v" if value is not None else ""
    if value is not None:
        initializers["v"] = np.array(value, dtype=np.float32)
    rng = np.random.default_rng(0)
    initializers.setdefault("w", rng.normal(size=(2, 2, 3, 3)).astype(np.float32))
    return build(
        f"""{HEADER}
        g (float[1,2,6,6] x{inputs}) => ({outputs}) {{
            s = {source} (x)
            p = Pad <mode = "{mode}"> (s, pads{value_input})
            y = {consumer}
            {extra}
        }}""",
        pads=pads,
        **initializers,
    )


def _assert_folds(model, consumer_op: str, expected_pads: list[int]) -> None:
    reference = snapshot(model)
    fuse = apply(model, *RULES)
    assert "Pad" not in op_types(model)
    assert sum(fuse.stats.values()) == 1
    consumer = nodes_of(model, consumer_op)[0]
    assert list(consumer.attributes.get_ints("pads")) == expected_pads
    assert not model.graph.initializers.keys() & {"pads", "v"}
    assert_equivalent(reference, model)


def _assert_declines(model, text: str) -> None:
    fuse = apply(model, *RULES)
    assert "Pad" in op_types(model)
    assert any(text in line for line in declines(fuse)), declines(fuse)


@pytest.mark.parametrize("value", [0.0, None], ids=["explicit_zero", "default"])
def test_zero_pad_folds_into_conv_pads(value):
    model = _pad_model(
        "Conv <kernel_shape = [3, 3], pads = [1, 0, 0, 1]> (p, w)", value=value, source="Neg"
    )
    _assert_folds(model, "Conv", [2, 2, 2, 2])


def test_nonzero_pad_value_declines_for_conv():
    _assert_declines(
        _pad_model("Conv <kernel_shape = [3, 3]> (p, w)", value=1.5),
        "Pad value 1.5 is not 0: Conv pads with zeros",
    )


def test_reflect_pad_declines():
    _assert_declines(
        _pad_model("Conv <kernel_shape = [3, 3]> (p, w)", mode="reflect", value=None),
        "Pad mode reflect: only constant padding folds into Conv",
    )


def test_channel_padding_declines():
    pads = np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=np.int64)
    _assert_declines(
        _pad_model(
            "MaxPool <kernel_shape = [2, 2]> (p)",
            value=-np.inf,
            pads=pads,
            outputs="float[1,3,?,?] y",
        ),
        "Pad pads the batch or channel axis",
    )


def test_negative_pads_decline():
    pads = np.array([0, 0, -1, 0, 0, 0, 1, 0], dtype=np.int64)
    _assert_declines(
        _pad_model("Conv <kernel_shape = [3, 3]> (p, w)", pads=pads),
        "Pad crops",
    )


def test_pad_amounts_from_a_graph_input_decline():
    model = build(
        f"""{HEADER}
        g (float[1,2,6,6] x, int64[8] pads) => (float[1,2,?,?] y) {{
            p = Pad (x, pads)
            y = Conv <kernel_shape = [3, 3]> (p, w)
        }}""",
        pads=PADS,
        w=np.ones((2, 2, 3, 3), np.float32),
    )
    _assert_declines(model, "Pad amounts are not an initializer")


def test_pad_output_with_a_second_reader_declines():
    _assert_declines(
        _pad_model(
            "Conv <kernel_shape = [3, 3]> (p, w)", outputs="float[1,2,?,?] y, float[1,2,?,?] p"
        ),
        "Pad output is also used elsewhere or is a graph output",
    )


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_zero_pad_folds_into_unpadded_average_pool(count_include_pad):
    model = _pad_model(
        f"AveragePool <kernel_shape = [3, 3], count_include_pad = {count_include_pad}> (p)"
    )
    _assert_folds(model, "AveragePool", [1, 2, 2, 1])
    assert nodes_of(model, "AveragePool")[0].attributes.get_int("count_include_pad") == 1


def test_average_pool_excluding_its_own_padding_declines():
    _assert_declines(
        _pad_model(
            "AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (p)",
            pads=np.array([0, 0, 1, 0, 0, 0, 0, 1], dtype=np.int64),
        ),
        "the Pad's zeros would stop being counted",
    )


def test_average_pool_with_ceil_mode_declines():
    _assert_declines(
        _pad_model("AveragePool <kernel_shape = [3, 3], ceil_mode = 1, strides = [2, 2]> (p)"),
        "ceil_mode=1",
    )


def test_minus_infinity_pad_folds_into_max_pool():
    model = _pad_model("MaxPool <kernel_shape = [3, 3]> (p)", value=-np.inf, source="Neg")
    _assert_folds(model, "MaxPool", [1, 2, 2, 1])


def test_zero_pad_after_relu_folds_into_max_pool():
    model = _pad_model("MaxPool <kernel_shape = [3, 3], strides = [2, 2]> (p)")
    _assert_folds(model, "MaxPool", [1, 2, 2, 1])


def test_zero_pad_of_a_signed_input_declines_for_max_pool():
    _assert_declines(
        _pad_model("MaxPool <kernel_shape = [3, 3]> (p)", source="Neg"),
        "Pad value 0 could change the max",
    )


def test_padding_as_large_as_the_kernel_declines():
    _assert_declines(
        _pad_model("MaxPool <kernel_shape = [2, 2]> (p)", value=-np.inf),
        "padding would reach the kernel size",
    )


def test_max_pool_indices_in_use_declines():
    model = build(
        f"""{HEADER}
        g (float[1,2,6,6] x) => (float[1,2,?,?] y, int64[1,2,?,?] i) {{
            p = Pad (x, pads, v)
            y, i = MaxPool <kernel_shape = [3, 3]> (p)
        }}""",
        pads=PADS,
        v=np.array(-np.inf, dtype=np.float32),
    )
    _assert_declines(model, "Indices output is used")


def test_opset_18_pad_with_axes_folds():
    model = build(
        """<ir_version: 8, opset_import: ["" : 18]>
        g (float[1,2,6,6] x) => (float[1,2,?,?] y) {
            p = Pad (x, pads, , axes)
            y = Conv <kernel_shape = [3, 3]> (p, w)
        }""",
        pads=np.array([1, 2, 0, 1], dtype=np.int64),
        axes=np.array([-1, 2], dtype=np.int64),
        w=np.random.default_rng(3).normal(size=(2, 2, 3, 3)).astype(np.float32),
    )
    _assert_folds(model, "Conv", [2, 1, 1, 0])
