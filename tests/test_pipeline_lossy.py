"""Lossy pipelines: step and cumulative fidelity, budgets, accuracy, and what passes receive."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import onnx_ir as ir
import pytest

from graphopt.calibration import open_data
from graphopt.errors import BudgetError, GraphoptError, VerificationError
from graphopt.evaluate import Evaluator
from graphopt.model_io import resolve_model
from graphopt.pass_api import GraphPass, scoped_registration
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline


def _scale_first_weight(model: ir.Model, factor: float) -> None:
    conv = next(n for n in model.graph if n.op_type in ("Conv", "Gemm"))
    weight = conv.inputs[1]
    array = weight.const_value.numpy()
    scaled = (array.astype(np.float64) * factor).astype(array.dtype)  # keeps fp16 weights fp16
    weight.const_value = ir.Tensor(scaled, name=weight.name)


@dataclasses.dataclass(kw_only=True)
class _Perturb(GraphPass):
    """A lossy pass: scales the first layer's weight a little."""

    lossless: ClassVar[bool] = False
    factor: float = 1.001

    def call(self, model):
        _scale_first_weight(model, self.factor)
        self.stats["scaled"] += 1
        return ir.passes.PassResult(model, modified=True)


@dataclasses.dataclass(kw_only=True)
class _WrongLossless(GraphPass):
    """Claims to be lossless but changes a weight by 5%."""

    def call(self, model):
        _scale_first_weight(model, 1.05)
        return ir.passes.PassResult(model, modified=True)


@dataclasses.dataclass(kw_only=True)
class _NeedsEverything(GraphPass):
    """Records the context it was handed."""

    lossless: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"calibration"})
    seen: ClassVar[list] = []

    def call(self, model):
        type(self).seen.append(self.context)
        self.stats["batches"] = sum(1 for _ in self.context.calibration)
        self.stats["work_dir_exists"] = int(self.context.work_dir.is_dir())
        return ir.passes.PassResult(model, modified=False)


@pytest.fixture(autouse=True, scope="module")
def _test_passes():
    """The test passes exist while this module's tests run, never after."""
    with scoped_registration({"_perturb": _Perturb, "_wrong_lossless": _WrongLossless,
                              "_needs_everything": _NeedsEverything, "_timed": _Timed}):
        yield


def test_lossless_after_lossy_is_judged_on_its_step():
    model = resolve_model("zoo:tiny_cnn")
    report = Pipeline.from_spec("cleanup,_perturb,fuse").run(model)
    perturb, fuse = report.passes[1], report.passes[2]
    assert not perturb.lossless and perturb.fidelity.max_rel > 1e-4
    assert fuse.step_fidelity.max_rel <= 1e-4  # fuse is judged on its own step ...
    assert fuse.fidelity.max_rel > 1e-4  # ... while the cumulative one carries the loss
    assert fuse.judgement.ok and str(fuse.judgement.budget) == "max_rel<=0.0001"


def test_wrong_lossless_rewrite_after_a_lossy_pass_is_named():
    model = resolve_model("zoo:tiny_cnn")
    with pytest.raises(VerificationError,
                       match=r"pass '_wrong_lossless' changed the outputs.*passes before it:"
                             r" cleanup, _perturb"):
        Pipeline.from_spec("cleanup,_perturb,_wrong_lossless").run(model)


def test_budget_stops_a_lossy_pass_and_names_the_figure():
    model = resolve_model("zoo:tiny_cnn")
    with pytest.raises(BudgetError, match=r"pass '_perturb' breaks the budget: sqnr .* dB"
                                          r" breaks sqnr>=200"):
        Pipeline.from_spec("cleanup,_perturb").run(model, budget="sqnr>=200")


def test_budget_warn_keeps_going():
    model = resolve_model("zoo:tiny_cnn")
    report = Pipeline.from_spec("_perturb,fuse").run(model, budget="sqnr>=200",
                                                     on_budget="warn")
    assert [r.name for r in report.passes] == ["_perturb", "fuse"]
    assert any("breaks the budget" in w for w in report.warnings)
    assert not report.passes[0].judgement.ok


def test_budget_kept():
    report = Pipeline.from_spec("_perturb").run(resolve_model("zoo:tiny_cnn"),
                                                budget="sqnr>=30,cosine>=0.999")
    assert report.passes[0].judgement.ok


def test_accuracy_before_and_after_a_lossy_pass():
    model = resolve_model("zoo:digits")
    evaluator = Evaluator(open_data("zoo:digits:test", model))
    report = Pipeline.from_spec("_perturb(factor=1.01)").run(
        model, context=PassContext(evaluator=evaluator), budget="accuracy_drop<=0.5")
    assert report.accuracy_before == pytest.approx(99.56, abs=0.01)
    assert abs(report.accuracy_after - report.accuracy_before) <= 0.5
    with pytest.raises(BudgetError, match="accuracy_drop .* points breaks accuracy_drop<=1"):
        Pipeline.from_spec("_perturb(factor=-1.0)").run(
            resolve_model("zoo:digits"), context=PassContext(evaluator=evaluator),
            budget="accuracy_drop<=1")


def test_accuracy_budget_without_labels_is_refused():
    with pytest.raises(GraphoptError, match="needs labelled data"):
        Pipeline.from_spec("_perturb").run(resolve_model("zoo:tiny_cnn"),
                                           budget="accuracy_drop<=1")


def test_missing_calibration_becomes_random_data_with_a_warning():
    _NeedsEverything.seen.clear()
    model = resolve_model("zoo:tiny_cnn")
    report = Pipeline.from_spec("_needs_everything").run(model)
    (context,) = _NeedsEverything.seen
    assert context.calibration_is_random and report.passes[0].stats["batches"] == 16
    assert report.passes[0].stats["work_dir_exists"] == 1
    assert context.work_dir is None  # the scratch folder is gone after the run
    assert any("needs calibration data and got none" in w for w in report.warnings)


def test_given_calibration_reaches_the_pass():
    _NeedsEverything.seen.clear()
    model = resolve_model("zoo:digits")
    data = open_data("zoo:digits", model)
    report = Pipeline.from_spec("_needs_everything").run(
        model, context=PassContext(calibration=data))
    assert _NeedsEverything.seen[0].calibration is data
    assert report.passes[0].stats["batches"] == len(data) and not report.warnings


@pytest.mark.parametrize("need, message", [
    ("latency", "needs a latency probe"),
    ("evaluator", "needs labelled data"),
])
def test_unmet_needs_name_the_pass(need, message):
    @dataclasses.dataclass(kw_only=True)
    class Needy(GraphPass):
        needs: ClassVar[frozenset[str]] = frozenset({need})

        def call(self, model):
            return ir.passes.PassResult(model, modified=False)

    Needy.name = "needy"
    with pytest.raises(GraphoptError, match=f"pass 'needy' {message}"):
        Pipeline([Needy()]).run(resolve_model("zoo:tiny_cnn"))


def test_verification_runs_on_every_batch_of_a_source():
    model = resolve_model("zoo:digits")
    data = open_data("zoo:digits:test", model)
    report = Pipeline.from_spec("_perturb(factor=1.01)").run(model, inputs=data)
    assert report.verification_data.startswith("zoo:digits:test")
    assert report.passes[0].fidelity.top1_agreement is not None
    # 450 samples: an agreement share on that many, not on one sample
    assert 0.9 < report.passes[0].fidelity.top1_agreement <= 1.0


@dataclasses.dataclass(kw_only=True)
class _Timed(GraphPass):
    """Measures the model it is given through the probe in its context (passes/ style: no
    backend import, only graphopt.latency's protocol)."""

    needs: ClassVar[frozenset[str]] = frozenset({"latency"})

    def call(self, model):
        estimate = self.context.latency.measure(model)
        self.stats["median_us"] = round(estimate.median_ms * 1000)
        self.stats["samples"] = estimate.samples
        return ir.passes.PassResult(model, modified=False)


@pytest.mark.parametrize("target", ["ort-cpu", "openvino-cpu"])
def test_a_pass_measures_latency_through_the_injected_probe(target):
    if target.startswith("openvino"):
        pytest.importorskip("openvino", reason="needs openvino")
    from graphopt.backends.probe import RunnerLatencyProbe

    probe = RunnerLatencyProbe(target, threads=1, max_seconds=1.5, sessions=2)
    report = Pipeline.from_spec("_timed").run(resolve_model("zoo:tiny_cnn"),
                                              context=PassContext(latency=probe))
    stats = report.passes[0].stats
    assert stats["median_us"] > 0 and stats["samples"] >= 20


def test_wrong_lossless_rewrite_after_fp16_conversion_is_named():
    model = resolve_model("zoo:tiny_cnn")
    with pytest.raises(VerificationError, match=r"pass '_wrong_lossless' changed the outputs.*"
                                                r"lossless pass on an fp16 model"):
        Pipeline.from_spec("cleanup,convert_float,_wrong_lossless").run(model)


def test_fuse_after_fp16_conversion_is_judged_at_the_model_noise():
    model = resolve_model("zoo:inception_v2")  # fuse folds BN into fp16 weights: 3.5% moves
    report = Pipeline.from_spec("cleanup,convert_float,fuse").run(model)
    convert, fuse = report.passes[1], report.passes[2]
    assert fuse.modified and fuse.judgement.ok
    limit = fuse.judgement.budget.term("max_rel").limit
    assert limit == pytest.approx(max(1e-2, 2 * convert.fidelity.max_rel))
    assert fuse.step_fidelity.max_rel <= limit
