"""Whole-graph steps of ``fuse``: common-subexpression elimination and initializer dedup."""

from __future__ import annotations

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, nodes_of, op_types, snapshot

from graphopt.errors import PipelineSpecError
from graphopt.passes.fusion import FusePass

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def test_cse_merges_identical_nodes_and_counts_them():
    model = build(
        f"""{HEADER}
        g (float[2,3] x) => (float[2,3] y) {{
            a = Relu(x)
            b = Relu(x)
            y = Add(a, b)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "cse")
    assert op_types(model) == ["Relu", "Add"]
    (add,) = nodes_of(model, "Add")
    assert add.inputs[0] is add.inputs[1]
    assert fuse.stats == {"cse": 1}
    assert_equivalent(reference, model)


def test_cse_keeps_both_graph_output_names():
    model = build(
        f"""{HEADER}
        g (float[4] x) => (float[4] y, float[4] z) {{
            y = Relu(x)
            z = Relu(x)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "cse")
    assert [v.name for v in model.graph.outputs] == ["y", "z"]
    assert "cse" not in fuse.stats  # one Relu became an Identity: no node saved
    assert_equivalent(reference, model)


def test_duplicate_initializers_merged_then_cse_merges_their_users():
    model = build(
        f"""{HEADER}
        g (float[3] x) => (float[3] y) {{
            a = Mul(x, c1)
            b = Mul(x, c2)
            y = Add(a, b)
        }}""",
        c1=np.array([1.5, 2.0, 3.0], np.float32),
        c2=np.array([1.5, 2.0, 3.0], np.float32),
    )
    reference = snapshot(model)
    fuse = apply(model, "dedupe_initializers", "cse")
    assert op_types(model) == ["Mul", "Add"]
    assert list(model.graph.initializers) == ["c1"]
    assert fuse.stats == {"dedupe_initializers": 1, "cse": 1}
    assert_equivalent(reference, model)


def test_rules_run_again_after_cse_exposes_a_match():
    model = build(
        f"""{HEADER}
        g (float[1,2] a, float[1,2] b, float[1,2] c) => (float[1,6] o) {{
            i = Concat<axis = 1>(a, b)
            y1 = Concat<axis = 1>(i, c)
            y2 = Concat<axis = 1>(i, c)
            o = Add(y1, y2)
        }}"""
    )
    reference = snapshot(model)
    fuse = apply(model, "concat_flatten", "cse")
    assert op_types(model) == ["Concat", "Add"]
    assert [v.name for v in nodes_of(model, "Concat")[0].inputs] == ["a", "b", "c"]
    assert fuse.stats == {"cse": 1, "concat_flatten": 1}
    assert not fuse.explanations
    assert_equivalent(reference, model)


def test_steps_are_selected_and_skipped_by_name():
    model = build(
        f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            a = Neg(x)
            b = Neg(x)
            y = Add(a, b)
        }}"""
    )
    FusePass(skip=("cse",))(model)
    assert op_types(model) == ["Neg", "Neg", "Add"]
    with pytest.raises(PipelineSpecError, match="unknown rule"):
        FusePass(rules=("no_such_step",))(model)
