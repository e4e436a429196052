"""Pipelines: run passes in order, time them, measure what they changed, verify each one.

Verification runs the model after every pass on the original's inputs (see ``graphopt.verify``).
A lossless pass whose outputs move beyond tolerance stops the run with a ``VerificationError``
that names the pass and the passes before it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from graphopt.cost import ModelCost, model_cost
from graphopt.errors import GraphoptError, VerificationError
from graphopt.pass_api import GraphPass, get_preset
from graphopt.spec import build_passes
from graphopt.verify import LOSSLESS_MAX_REL, Fidelity, Verifier

__all__ = ["PassRecord", "PipelineReport", "Pipeline", "DEFAULT_PRESET"]

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "lossless"


@dataclasses.dataclass
class PassRecord:
    """What one pass did."""

    name: str
    options: dict
    seconds: float
    modified: bool
    before: ModelCost
    after: ModelCost
    stats: dict[str, int]
    explanations: list[str]
    fidelity: Fidelity | None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "options": {k: _jsonable(v) for k, v in self.options.items()},
            "seconds": round(self.seconds, 6),
            "modified": self.modified,
            "nodes_before": self.before.nodes,
            "nodes_after": self.after.nodes,
            "params_before": self.before.params,
            "params_after": self.after.params,
            "macs_before": self.before.macs,
            "macs_after": self.after.macs,
            "stats": dict(self.stats),
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
        }


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclasses.dataclass
class PipelineReport:
    input_cost: ModelCost
    output_cost: ModelCost
    passes: list[PassRecord]
    fidelity: Fidelity | None


ProgressFn = Callable[[int, int, str], None]


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

    def run(
        self,
        model: ir.Model,
        *,
        verify: bool = True,
        inputs: Mapping[str, np.ndarray] | None = None,
        tolerance: float = LOSSLESS_MAX_REL,
        progress: ProgressFn | None = None,
    ) -> PipelineReport:
        """Apply the passes to ``model`` in place and report on each."""
        verifier = Verifier(model, inputs) if verify else None
        cost = model_cost(model)
        input_cost = cost
        records: list[PassRecord] = []
        fidelity = None
        for index, graph_pass in enumerate(self.passes):
            if progress is not None:
                progress(index, len(self.passes), graph_pass.name)
            start = time.perf_counter()
            result = self._apply(graph_pass, model, records)
            seconds = time.perf_counter() - start
            model = result.model
            after = model_cost(model)
            if verifier is not None:
                fidelity = verifier.check(model)
                self._enforce(graph_pass, fidelity, tolerance, records)
            records.append(
                PassRecord(
                    name=graph_pass.name,
                    options=graph_pass.options(),
                    seconds=seconds,
                    modified=result.modified,
                    before=cost,
                    after=after,
                    stats=dict(graph_pass.stats),
                    explanations=list(graph_pass.explanations),
                    fidelity=fidelity,
                )
            )
            logger.info("%s: %d -> %d nodes in %.3fs", graph_pass.name, cost.nodes,
                        after.nodes, seconds)
            cost = after
        if progress is not None:
            progress(len(self.passes), len(self.passes), "done")
        return PipelineReport(input_cost, cost, records, fidelity)

    @staticmethod
    def _apply(graph_pass: GraphPass, model: ir.Model, done: list[PassRecord]):
        """Run one pass; pre/postcondition failures name the pass and the passes before it."""
        try:
            return graph_pass(model)
        except (ir.passes.PreconditionError, ir.passes.PostconditionError) as exc:
            cause = exc.__cause__ or exc
            text = str(cause).strip().splitlines()[0] if str(cause).strip() else str(exc)
            before = ", ".join(r.name for r in done) or "none"
            raise GraphoptError(
                f"pass {graph_pass.name!r}: {text} (passes before it: {before})"
            ) from exc

    @staticmethod
    def _enforce(
        graph_pass: GraphPass, fidelity: Fidelity, tolerance: float, done: list[PassRecord]
    ) -> None:
        if not graph_pass.lossless or fidelity.max_rel <= tolerance:
            return
        before = ", ".join(r.name for r in done) or "none"
        raise VerificationError(
            f"pass {graph_pass.name!r} changed the outputs: max rel error {fidelity.max_rel:.3g}"
            f" > tolerance {tolerance:g} (passes before it: {before})"
        )
