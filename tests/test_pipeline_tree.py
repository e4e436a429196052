"""Pipelines sharing their first passes: run once, each result what its own run gives."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from graphopt.budget import Budget
from graphopt.errors import GraphoptError
from graphopt.model_io import clone_model, resolve_model
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline, PipelineCheckpoint
from graphopt.pipeline_tree import run_sharing_prefixes, shared_prefixes
from graphopt.run_data import resolve_run_data

SPECS = [
    "cleanup,fuse",
    "cleanup,fuse,quantize",
    "cleanup,fuse,prune(ratio=0.3)",
    "cleanup,fuse,lowrank",
    "cleanup,fuse,prune(ratio=0.3),quantize",
    "cleanup,fuse,convert_float(to=fp16)",
]


def _bytes(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def _records(report) -> list[dict]:
    records = []
    for record in report.passes:
        entry = record.to_dict()
        entry.pop("seconds")
        records.append(entry)
    return records


def _run_alone(spec: str, model_spec: str, calib: str | None, **options):
    model = resolve_model(model_spec)
    data = resolve_run_data(model, model_spec, calib=calib)
    report = Pipeline.from_spec(spec).run(
        model, inputs=data.verification, context=PassContext(
            calibration=data.calibration, evaluator=data.evaluator), **options)
    return model, report


@pytest.mark.parametrize(("model_spec", "calib"), [("zoo:digits", "zoo:digits"),
                                                   ("zoo:mbv2_block", None)])
def test_shared_runs_give_what_each_pipeline_gives_alone(model_spec, calib):
    model = resolve_model(model_spec)
    before = _bytes(model)
    data = resolve_run_data(model, model_spec, calib=calib)
    context = PassContext(calibration=data.calibration, evaluator=data.evaluator)
    runs = list(run_sharing_prefixes([Pipeline.from_spec(s) for s in SPECS], model,
                                     inputs=data.verification, budget=Budget.parse(None),
                                     on_budget="warn", context=context))
    assert _bytes(model) == before  # the caller's model is left as it was
    assert [r.index for r in runs] == list(range(len(SPECS)))
    assert all(r.error is None for r in runs)
    # compress goes on from prune30's run; the lossy pipelines share cleanup,fuse; without
    # data the lossless pipeline verifies on other inputs than the lossy ones, so alone
    assert runs[4].resumed_after == 3
    assert runs[2].resumed_after == runs[3].resumed_after == runs[5].resumed_after == 2
    assert runs[1].resumed_after == (2 if calib else 0)
    for spec, shared in zip(SPECS, runs, strict=True):
        alone, report = _run_alone(spec, model_spec, calib, on_budget="warn")
        assert _bytes(shared.model) == _bytes(alone), spec
        assert _records(shared.report) == _records(report), spec
        assert shared.report.to_dict() == report.to_dict(), spec
        assert shared.report.accuracy_after == report.accuracy_after


def test_a_failing_pipeline_is_its_own_outcome_and_the_others_still_run():
    model = resolve_model("zoo:mbv2_block")
    pipelines = [Pipeline.from_spec("cleanup,fuse,prune(ratio=0.3)"),
                 Pipeline.from_spec("cleanup,fuse,prune(ratio=0.3),quantize"),
                 Pipeline.from_spec("cleanup,fuse,quantize")]
    runs = list(run_sharing_prefixes(pipelines, model, budget=Budget.parse("sqnr>=200")))
    assert all(r.error is not None and "breaks the budget" in str(r.error) for r in runs)
    runs = list(run_sharing_prefixes(pipelines, model, budget=Budget.parse("sqnr>=200"),
                                     on_budget="warn"))
    assert all(r.error is None for r in runs) and runs[1].resumed_after == 3
    assert any("breaks the budget" in w for w in runs[1].report.warnings)


def test_resuming_needs_the_same_first_passes_and_data():
    model = resolve_model("zoo:mbv2_block")
    kept: list[PipelineCheckpoint] = []
    Pipeline.from_spec("cleanup,fuse,quantize").run(model, checkpoint=kept.append,
                                                     checkpoint_after={2})
    assert len(kept) == 1 and [n for n, _ in kept[0].passes] == ["cleanup", "fuse"]
    with pytest.raises(GraphoptError, match="starts with other passes"):
        Pipeline.from_spec("cleanup,quantize").run(clone_model(kept[0].model), resume=kept[0])
    with pytest.raises(GraphoptError, match="verified on other data"):
        Pipeline.from_spec("cleanup,fuse,quantize").run(clone_model(kept[0].model), resume=kept[0])
    report = Pipeline.from_spec("cleanup,fuse,quantize").run(
        clone_model(kept[0].model), resume=kept[0], inputs=kept[0].inputs)
    assert [p.name for p in report.passes] == ["cleanup", "fuse", "quantize"]


def test_shared_prefixes_are_the_longest_common_starts_of_pairs():
    keys = [("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d"), ("x",)]
    assert shared_prefixes(keys) == {("a", "b"), ("a", "b", "c")}
