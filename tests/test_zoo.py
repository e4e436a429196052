"""The built-in zoo: every model loads, runs, is deterministic and realistically scaled."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphopt import oracle, zoo
from graphopt.errors import GraphoptError
from graphopt.model_io import resolve_model
from graphopt.verify import random_inputs


@pytest.mark.parametrize("name", zoo.LIGHT_MODELS)
def test_light_models_are_finite_and_not_saturated(name):
    model = resolve_model(f"zoo:{name}")
    assert model.graph.node(0).op_type != "ConstantOfShape"
    assert not any(node.op_type == "ConstantOfShape" for node in model.graph)
    (output,) = oracle.run_model(oracle.make_session(model), random_inputs(model)).values()
    assert np.isfinite(output).all()
    flat = output.ravel()
    assert flat.std() > 0
    if np.all(flat >= 0) and abs(flat.sum() - 1) < 1e-3:  # softmax: informative, not one-hot
        assert flat.max() < 0.9


def test_materialisation_is_deterministic():
    first = zoo.light.materialise("squeezenet")
    second = zoo.light.materialise("squeezenet")
    assert first.SerializeToString() == second.SerializeToString()


def test_legacy_habits_are_kept():
    proto = onnx.load(zoo.path("inception_v2"))
    assert proto.opset_import[0].version == 9
    initializers = {t.name for t in proto.graph.initializer}
    assert initializers <= {v.name for v in proto.graph.input}


@pytest.mark.parametrize("name", sorted(zoo.GENERATED_MODELS))
def test_generated_models_run(name):
    model = resolve_model(f"zoo:{name}")
    outputs = oracle.run_model(oracle.make_session(model), random_inputs(model, batch_size=2))
    assert all(np.isfinite(v).all() for v in outputs.values())


def test_digits_is_trained_and_accurate():
    model = resolve_model("zoo:digits")
    x, y = zoo.digits_test_data()
    assert x.shape[1:] == (1, 32, 32) and len(x) == len(y)
    (logits,) = oracle.run_model(oracle.make_session(model), {"input": x}).values()
    assert float(np.mean(logits.argmax(axis=1) == y)) >= 0.97
    ops = {node.op_type for node in model.graph}
    assert {"BatchNormalization", "Add", "Concat", "Conv"} <= ops


def test_unknown_name():
    with pytest.raises(GraphoptError, match="unknown zoo model"):
        resolve_model("zoo:resnet9000")
