"""Pipelines: records per pass, presets, postconditions that name the failing pass."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir
import pytest

from graphopt.errors import GraphoptError
from graphopt.model_io import resolve_model
from graphopt.pass_api import GraphPass, scoped_registration
from graphopt.pipeline import Pipeline


@dataclasses.dataclass(kw_only=True)
class _DropFirstNode(GraphPass):
    """Removes a node without rewiring its users: the postcondition must catch it."""

    def call(self, model):
        node = model.graph.node(0)
        model.graph.remove(node)
        return ir.passes.PassResult(model, modified=True)


@pytest.fixture(autouse=True, scope="module")
def _test_passes():
    """The test passes exist while this module's tests run, never after."""
    with scoped_registration({"_drop_first_node": _DropFirstNode}):
        yield


def test_records_per_pass():
    report = Pipeline.from_preset("lossless").run(resolve_model("zoo:tiny_cnn"))
    assert [r.name for r in report.passes] == ["cleanup", "fuse"]
    first = report.passes[0]
    assert first.before.nodes == report.input_cost.nodes
    assert report.passes[-1].after.nodes == report.output_cost.nodes
    assert all(r.seconds >= 0 and r.fidelity is not None for r in report.passes)
    assert report.output_cost.nodes < report.input_cost.nodes


def test_malformed_result_names_the_pass():
    model = resolve_model("zoo:tiny_cnn")
    with pytest.raises(GraphoptError, match="_drop_first_node.*passes before it: cleanup"):
        Pipeline.from_spec("cleanup,_drop_first_node").run(model, verify=False)


def test_progress_callback_sees_every_pass():
    seen = []
    Pipeline.from_spec("cleanup,fuse").run(
        resolve_model("zoo:mlp"), verify=False, progress=lambda i, n, name: seen.append(name)
    )
    assert seen == ["cleanup", "fuse", "done"]
