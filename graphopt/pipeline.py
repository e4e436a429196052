"""Pipelines: run passes in order, time them, measure what they changed, verify each one.

Verification runs the model after every pass on fixed inputs (see ``graphopt.verify``) and
records two fidelities: the **step** (against the model before the pass) and the
**cumulative** (against the original). They are judged by the kind of pass:

- a lossless pass must keep its step within the lossless tolerance of the precision the model
  computes in (``graphopt.budget.lossless_budget``: fp32 1e-4 relative, fp16 1e-2 ...),
  wherever it stands in the pipeline, also after a lossy pass; otherwise the run stops with a
  ``VerificationError`` naming the pass;
- a lossy pass is judged on the run's fidelity **budget** (``sqnr>=30,accuracy_drop<=0.5``)
  with its cumulative fidelity and, when an evaluator is given, the task accuracy lost since
  the original; a broken budget stops the run with a ``BudgetError`` (or, with
  ``on_budget="warn"``, is recorded as a warning).

Given the file the model was loaded from (``source``), the reference is what onnxruntime
computes on that file; a model that graphopt reads differently from onnxruntime (beyond the
lossless tolerance) is refused before any pass runs. NaN and infinities in the reference are
reported with the inputs and weights they come from, and compare equal where both sides have
them.

Data-aware passes get a :class:`~graphopt.pass_context.PassContext` before ``call``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import onnx_ir as ir

from graphopt import atomic
from graphopt.budget import Budget, BudgetTerm, Judgement, lossless_budget
from graphopt.calibration import RandomData
from graphopt.cost import ModelCost, float_precision, model_cost
from graphopt.errors import (
    BudgetError,
    GraphoptError,
    UnsupportedModelError,
    VerificationError,
)
from graphopt.feeds import static_batch_size
from graphopt.model_io import clone_model
from graphopt.pass_api import GraphPass, get_preset
from graphopt.pass_context import RANDOM_CALIBRATION_BATCHES, PassContext
from graphopt.spec import build_passes
from graphopt.verify import Fidelity, PassFidelity, Verifier

__all__ = ["PassRecord", "PipelineReport", "PipelineCheckpoint", "Pipeline", "DEFAULT_PRESET",
           "OnBudget", "pass_key"]

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "lossless"
LOSSY_RANDOM_SAMPLES = 8
"""Random verification samples of a pipeline with lossy passes when no data is given."""
VERIFICATION_SEED_OFFSET = 1000
"""Random verification data is drawn from seeds apart from random calibration data's."""
OnBudget = Literal["stop", "warn"]


@dataclasses.dataclass
class PassRecord:
    """What one pass did. ``fidelity`` is cumulative (against the original), ``step_fidelity``
    against the model before the pass; ``accuracy`` (percent) is measured after lossy passes
    when labelled data is given; ``judgement`` is the tolerance or budget it was judged on."""

    name: str
    options: dict
    seconds: float
    modified: bool
    before: ModelCost
    after: ModelCost
    stats: dict[str, int]
    explanations: list[str]
    fidelity: Fidelity | None
    step_fidelity: Fidelity | None = None
    lossless: bool = True
    accuracy: float | None = None
    judgement: Judgement | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "lossless": self.lossless,
            "options": {k: _jsonable(v) for k, v in self.options.items()},
            "seconds": round(self.seconds, 6),
            "modified": self.modified,
            "nodes_before": self.before.nodes,
            "nodes_after": self.after.nodes,
            "params_before": self.before.params,
            "params_after": self.after.params,
            "macs_before": self.before.macs,
            "macs_after": self.after.macs,
            "weight_bytes_before": self.before.weight_bytes,
            "weight_bytes_after": self.after.weight_bytes,
            "stats": dict(self.stats),
            "explanations": list(self.explanations),
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "step_fidelity": self.step_fidelity.to_dict() if self.step_fidelity else None,
            "accuracy": self.accuracy,
            "judgement": self.judgement.to_dict() if self.judgement else None,
        }


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclasses.dataclass
class PipelineReport:
    """The whole run: costs, per-pass records, final cumulative fidelity and accuracy."""

    input_cost: ModelCost
    output_cost: ModelCost
    passes: list[PassRecord]
    fidelity: Fidelity | None
    budget: Budget = dataclasses.field(default_factory=Budget)
    verification_data: str | None = None
    accuracy_data: str | None = None
    accuracy_before: float | None = None
    calibration_data: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    nonfinite_sources: list[str] = dataclasses.field(default_factory=list)

    @property
    def accuracy_after(self) -> float | None:
        measured = [r.accuracy for r in self.passes if r.accuracy is not None]
        return measured[-1] if measured else self.accuracy_before

    def to_dict(self) -> dict:
        return {
            "budget": str(self.budget),
            "verification_data": self.verification_data,
            "calibration_data": self.calibration_data,
            "accuracy": None if self.accuracy_before is None else {
                "data": self.accuracy_data,
                "metric": "top-1 accuracy, percent",
                "before": self.accuracy_before,
                "after": self.accuracy_after,
            },
            "warnings": list(self.warnings),
            "nonfinite_sources": list(self.nonfinite_sources),
        }


PassKey = tuple[str, str]
"""A pass as run: its name and its options (see :func:`pass_key`)."""


def pass_key(graph_pass: GraphPass) -> PassKey:
    """What makes two passes the same step: name and options."""
    options = graph_pass.options()
    return graph_pass.name, repr(sorted((k, _jsonable(v)) for k, v in options.items()))


@dataclasses.dataclass(frozen=True)
class PipelineCheckpoint:
    """A run after its first passes, for pipelines that start with the same passes to go on
    from (``Pipeline.run(resume=...)``): the model then (a clone, never changed later), the
    verifier and its last outputs, and what the report held."""

    passes: tuple[PassKey, ...]
    inputs: object
    model: ir.Model
    verifier: Verifier | None
    previous: Mapping[str, np.ndarray] | None
    records: tuple[PassRecord, ...]
    warnings: tuple[str, ...]
    cost: ModelCost
    accuracy_before: float | None = None


ProgressFn = Callable[[float, int, str], None]
"""``(passes done, passes in all, what is running)``; fractional while a pass reports steps."""
VerificationData = Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]]


class Pipeline:
    """An ordered list of passes with verification between them."""

    def __init__(self, passes: Sequence[GraphPass]) -> None:
        self.passes = list(passes)

    @classmethod
    def from_spec(cls, spec: str) -> Pipeline:
        """From a spec string (``"cleanup,fuse"``) or a preset name (``"lossless"``)."""
        return cls(build_passes(spec))

    @classmethod
    def from_preset(cls, name: str) -> Pipeline:
        if get_preset(name) is None:
            from graphopt.pass_api import preset_names

            raise GraphoptError(f"unknown preset {name!r} (presets: {', '.join(preset_names())})")
        return cls.from_spec(name)

    @property
    def lossy(self) -> list[GraphPass]:
        return [p for p in self.passes if not p.lossless]

    def run(
        self,
        model: ir.Model,
        *,
        verify: bool = True,
        inputs: VerificationData | None = None,
        budget: Budget | str | None = None,
        on_budget: OnBudget = "stop",
        context: PassContext | None = None,
        tolerance: float | None = None,
        progress: ProgressFn | None = None,
        source: str | os.PathLike | None = None,
        resume: PipelineCheckpoint | None = None,
        checkpoint: Callable[[PipelineCheckpoint], None] | None = None,
        checkpoint_after: Container[int] = (),
    ) -> PipelineReport:
        """Apply the passes to ``model`` in place and report on each.

        ``inputs`` are the verification data (a feed or a data source; seeded random inputs
        when ``None``): keep them apart from ``context.calibration``. ``budget`` judges lossy
        passes (see the module docstring); ``tolerance`` overrides the fp32 lossless limit.
        ``source`` is the file ``model`` was loaded from: the reference outputs are then
        onnxruntime's on that file.

        ``resume`` goes on from a checkpoint of a run whose first passes and verification
        data are this run's (``model`` is its model, cloned): those passes are not run again
        and their records are this report's. ``checkpoint`` gets a
        :class:`PipelineCheckpoint` after each pass whose count is in ``checkpoint_after``.
        """
        budget = Budget.parse(budget) if isinstance(budget, str) or budget is None else budget
        context = dataclasses.replace(context or PassContext(), budget=budget)
        warnings: list[str] = []
        self._check_needs(model, context, warnings)
        if budget and not verify:
            raise GraphoptError(f"a fidelity budget ({budget}) needs verification: drop"
                                " --no-verify or the budget")
        if budget.term("accuracy_drop") is not None and context.evaluator is None:
            raise GraphoptError(f"budget {budget.term('accuracy_drop')} needs labelled data"
                                " (a 'labels' array in the data, or zoo:digits)")
        inputs = self.verification_inputs(model, inputs, context.seed)
        done = self._resumed(resume, inputs, verify)
        if resume is None:
            verifier = Verifier(model, inputs, source=source) if verify else None
        else:
            verifier = copy.copy(resume.verifier)
            if verifier is not None:
                verifier.previous = resume.previous
        start_warnings = len(warnings)  # those that depend on all the passes, not the prefix
        if verifier is not None and resume is None:
            self._check_reference(verifier, model, source, warnings)
        accuracy_before = None
        if resume is not None:
            accuracy_before = resume.accuracy_before
        elif context.evaluator is not None and (self.lossy or checkpoint is not None):
            accuracy_before = context.evaluator.accuracy(model)
        if accuracy_before is None and context.evaluator is not None and self.lossy:
            raise GraphoptError("the checkpoint to resume from has no accuracy before the"
                                " passes: make it with the same evaluator")
        input_cost = model_cost(model) if resume is None else (
            resume.records[0].before if resume.records else resume.cost)
        cost = input_cost if resume is None else resume.cost
        warnings.extend(resume.warnings if resume is not None else ())
        report = PipelineReport(
            input_cost=input_cost, output_cost=cost, passes=[], fidelity=None, budget=budget,
            verification_data=verifier.description if verifier else None,
            accuracy_data=context.evaluator.description if context.evaluator else None,
            accuracy_before=accuracy_before if self.lossy else None,
            calibration_data=_calibration_label(self.passes, context),
            warnings=warnings,
            nonfinite_sources=verifier.nonfinite_sources if verifier else [],
        )
        with contextlib.ExitStack() as stack:
            if context.work_dir is None:
                context.work_dir = stack.enter_context(atomic.scratch_dir())
                stack.callback(setattr, context, "work_dir", None)
            if resume is not None:
                report.passes.extend(resume.records)
                report.fidelity = resume.records[-1].fidelity if resume.records else None
            for index, graph_pass in enumerate(self.passes):
                if index < done:
                    continue
                if progress is not None:
                    progress(index, len(self.passes), graph_pass.name)
                    context.progress = _step_reporter(progress, index, len(self.passes),
                                                      graph_pass.name)
                graph_pass.with_context(context)
                start = time.perf_counter()
                result = self._apply(graph_pass, model, report.passes)
                seconds = time.perf_counter() - start
                model = result.model
                # Lossless rewrites keep every value's shape; lossy ones (pruning, low rank)
                # may change them, so their costs are taken on re-inferred shapes.
                after = model_cost(model,
                                   refresh_shapes=result.modified and not graph_pass.lossless)
                record = PassRecord(
                    name=graph_pass.name, options=graph_pass.options(), seconds=seconds,
                    modified=result.modified, before=cost, after=after,
                    stats=dict(graph_pass.stats), explanations=list(graph_pass.explanations),
                    fidelity=None, lossless=graph_pass.lossless,
                )
                if verifier is not None:
                    checked = self._check(verifier, graph_pass, model, report.passes)
                    record.step_fidelity, record.fidelity = checked.step, checked.cumulative
                    self._judge(graph_pass, model, checked, record, report, context,
                                tolerance, on_budget)
                report.passes.append(record)
                report.fidelity = record.fidelity
                logger.info("%s: %d -> %d nodes in %.3fs", graph_pass.name, cost.nodes,
                            after.nodes, seconds)
                cost = after
                if checkpoint is not None and index + 1 in checkpoint_after:
                    checkpoint(PipelineCheckpoint(
                        passes=tuple(pass_key(p) for p in self.passes[:index + 1]),
                        inputs=inputs, model=clone_model(model), verifier=verifier,
                        previous=None if verifier is None else verifier.previous,
                        records=tuple(report.passes),
                        warnings=tuple(report.warnings[start_warnings:]), cost=cost,
                        accuracy_before=accuracy_before))
        report.output_cost = cost
        if progress is not None:
            progress(len(self.passes), len(self.passes), "done")
        return report

    def verification_inputs(self, model: ir.Model, inputs: VerificationData | None,
                            seed: int = 0) -> VerificationData | None:
        """The data :meth:`run` verifies on: ``inputs``, or for a pipeline with lossy passes
        a few seeded random samples (``None``: the verifier's one random sample)."""
        if inputs is None and self.lossy:
            # One random sample moves a lossy pass's SQNR by several dB: pool a few.
            return RandomData(model, batches=LOSSY_RANDOM_SAMPLES,
                              batch_size=static_batch_size(model) or 1,
                              seed=seed + VERIFICATION_SEED_OFFSET)
        return inputs

    def _resumed(self, resume: PipelineCheckpoint | None, inputs, verify: bool) -> int:
        """How many passes ``resume`` has done of this pipeline (0 without one)."""
        if resume is None:
            return 0
        done = len(resume.passes)
        if tuple(pass_key(p) for p in self.passes[:done]) != resume.passes:
            raise GraphoptError(f"cannot resume from a checkpoint after"
                                f" {', '.join(n for n, _ in resume.passes)}: this pipeline"
                                " starts with other passes")
        if resume.inputs is not inputs or (resume.verifier is not None) != verify:
            raise GraphoptError("cannot resume from a checkpoint verified on other data")
        return done

    def _check_needs(self, model: ir.Model, context: PassContext, warnings: list[str]) -> None:
        """Unmet needs: one line naming the pass; no calibration: random data, with a warning."""
        for graph_pass in self.passes:
            needs = graph_pass.needs
            if "evaluator" in needs and context.evaluator is None:
                raise GraphoptError(f"pass {graph_pass.name!r} needs labelled data to measure"
                                    " accuracy: give data with a 'labels' array, or zoo:digits")
            if "latency" in needs and context.latency is None:
                raise GraphoptError(f"pass {graph_pass.name!r} needs a latency probe: give a"
                                    " target backend (--target)")
            if "calibration" in needs and context.calibration is None:
                context.calibration = RandomData(
                    model, batches=RANDOM_CALIBRATION_BATCHES,
                    batch_size=static_batch_size(model) or 1, seed=context.seed,
                )
                context.calibration_is_random = True
                warnings.append(
                    f"pass {graph_pass.name!r} needs calibration data and got none: it uses"
                    f" {context.calibration.description}; give --calib for real statistics"
                )
                logger.info("%s", warnings[-1])  # reported in PipelineReport.warnings

    @staticmethod
    def _check_reference(verifier: Verifier, model: ir.Model, source, warnings: list[str]) -> None:
        """graphopt must read the file as onnxruntime does; NaN/inf in the reference is said."""
        loaded = verifier.load_fidelity
        if loaded is not None:
            limit = lossless_budget(float_precision(model))
            if not limit.judge(loaded).ok:
                raise VerificationError(
                    f"{source}: onnxruntime computes different outputs from the file than from"
                    f" graphopt's reading of it ({loaded.summary()}); refusing a model the two"
                    " read differently"
                )
        count = verifier.nonfinite_outputs
        if count:
            origin = (", ".join(verifier.nonfinite_sources) if verifier.nonfinite_sources
                      else "no input or weight is NaN/inf: the computation makes them")
            warnings.append(f"the input model's outputs hold {count} NaN/inf values ({origin});"
                            " verification counts them equal where both sides have them")
            logger.info("%s", warnings[-1])  # reported in PipelineReport.warnings

    @staticmethod
    def _apply(graph_pass: GraphPass, model: ir.Model, done: list[PassRecord]):
        """Run one pass; pre/postcondition failures name the pass and the passes before it."""
        try:
            return graph_pass(model)
        except (ir.passes.PreconditionError, ir.passes.PostconditionError) as exc:
            cause = exc.__cause__ or exc
            text = str(cause).strip().splitlines()[0] if str(cause).strip() else str(exc)
            raise GraphoptError(
                f"pass {graph_pass.name!r}: {text} (passes before it: {_names(done)})"
            ) from exc

    @staticmethod
    def _check(verifier: Verifier, graph_pass: GraphPass, model: ir.Model,
               done: list[PassRecord]) -> PassFidelity:
        """Verify after ``graph_pass``: a model onnxruntime cannot run any more names it."""
        try:
            return verifier.check_pass(model)
        except UnsupportedModelError as exc:
            raise VerificationError(
                f"pass {graph_pass.name!r} broke the model: {exc} (passes before it:"
                f" {_names(done)})"
            ) from exc

    @staticmethod
    def _judge(graph_pass: GraphPass, model: ir.Model, checked: PassFidelity,
               record: PassRecord, report: PipelineReport, context: PassContext,
               tolerance: float | None, on_budget: OnBudget) -> None:
        before = _names(report.passes)
        if graph_pass.lossless:
            precision = float_precision(model)
            previous = report.passes[-1].fidelity if report.passes else None
            limit = _lossless_limit(precision, previous, tolerance)
            record.judgement = limit.judge(checked.step)
            if not record.judgement.ok:
                if checked.step.nonfinite_mismatch:
                    what = (f"NaN/inf at {checked.step.nonfinite_mismatch} output values where"
                            " the model before it had finite ones, or the reverse")
                    if report.nonfinite_sources:
                        what += f"; NaN/inf in {', '.join(report.nonfinite_sources)}"
                else:
                    what = (f"max rel error {checked.step.max_rel:.3g} > tolerance"
                            f" {limit.term('max_rel').limit:.3g} of a lossless pass on an"
                            f" {precision} model")
                raise VerificationError(
                    f"pass {graph_pass.name!r} changed the outputs: {what} (passes before it:"
                    f" {before})"
                )
            return
        drop = None
        if context.evaluator is not None and report.accuracy_before is not None:
            record.accuracy = context.evaluator.accuracy(model)
            drop = report.accuracy_before - record.accuracy
        record.judgement = report.budget.judge(checked.cumulative, accuracy_drop=drop)
        for text in record.judgement.unchecked:
            report.warnings.append(f"pass {graph_pass.name!r}: budget term {text}: not checked")
        if record.judgement.ok:
            return
        message = (f"pass {graph_pass.name!r} breaks the budget: "
                   f"{'; '.join(record.judgement.failures)} (passes before it: {before})")
        if on_budget == "warn":
            report.warnings.append(message)
            logger.info("%s", message)  # reported in PipelineReport.warnings
            return
        raise BudgetError(message)


HALF_PRECISION_NOISE_FACTOR = 2.0
"""On a half-precision model a lossless pass may move outputs by this many times the model's
own rounding error (see :func:`_lossless_limit`)."""


def _lossless_limit(precision: str, previous: Fidelity | None,
                    tolerance: float | None) -> Budget:
    """What a lossless pass may change in a model computing at ``precision``.

    fp32: float reordering only (``tolerance`` overrides the 1e-4 default). fp16/bf16: two
    evaluations of one function at half precision differ by about the model's own rounding
    error, its cumulative error against the fp32 original (``previous``; BatchNorm folded
    into fp16 weights rounds once where the unfused graph rounds twice), so the limit is the
    precision's tolerance or twice that error, whichever is larger.
    """
    limit = lossless_budget(precision).term("max_rel").limit
    if precision == "fp32":
        return Budget((BudgetTerm("max_rel", tolerance if tolerance is not None else limit),))
    if previous is not None and math.isfinite(previous.max_rel):
        limit = max(limit, HALF_PRECISION_NOISE_FACTOR * previous.max_rel)
    return Budget((BudgetTerm("max_rel", limit),))


def _names(records: Sequence[PassRecord]) -> str:
    return ", ".join(r.name for r in records) or "none"


def _calibration_label(passes: Sequence[GraphPass], context: PassContext) -> str | None:
    if not any("calibration" in p.needs for p in passes) or context.calibration is None:
        return None
    return context.calibration.description


def _step_reporter(progress: ProgressFn, index: int, passes: int, name: str):
    """Forward a pass's ``(step, done, total)`` reports as fractional pipeline progress."""

    def report(step: str, done: int, total: int) -> None:
        share = min(done / total, 1.0) if total > 0 else 0.0
        count = f" {done}/{total}" if total > 0 else f" {done}"
        progress(index + share, passes, f"{name}: {step}{count}")

    return report
