"""Judge candidate models on a budget with calibration data, inside a pass that searches.

Passes that look for the most compression a budget allows (mixed precision, pruning to a MAC
target) try candidates on fixed calibration batches, never on the data the pipeline verifies
on: the budget's output terms (``sqnr``, ``cosine``, ``top1``, ``max_rel``) against the
reference model's outputs, and ``accuracy_drop`` on the calibration labels when there are some.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.budget import Budget, Judgement
from graphopt.verify import compare_outputs

__all__ = ["BudgetTrials", "MAX_TRIAL_BATCHES"]

MAX_TRIAL_BATCHES = 32
"""Calibration batches each trial runs (the search never needs every sample)."""


class BudgetTrials:
    """Runs candidate models on fixed calibration batches and judges them on the budget
    (``count`` trials so far)."""

    def __init__(self, model: ir.Model, data: Iterable[Mapping[str, np.ndarray]],
                 labels: np.ndarray | None, budget: Budget) -> None:
        self.feeds = []
        for index, feed in enumerate(data):
            if index >= MAX_TRIAL_BATCHES:
                break
            self.feeds.append(dict(feed))
        self.budget = budget
        self.reference = self._outputs(model)
        self.labels = None
        if labels is not None and budget.term("accuracy_drop") is not None:
            count = sum(len(next(iter(f.values()))) for f in self.feeds)
            self.labels = np.asarray(labels)[:count]
            self.reference_accuracy = self._accuracy(self.reference)
        self.count = 0

    def _outputs(self, model: ir.Model) -> dict[str, np.ndarray]:
        session = oracle.make_session(model)
        runs = [oracle.run_model(session, feed) for feed in self.feeds]
        return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}

    def _accuracy(self, outputs: Mapping[str, np.ndarray]) -> float:
        scores = next(iter(outputs.values()))
        predicted = scores.reshape(scores.shape[0], -1).argmax(axis=1)
        return 100.0 * float(np.mean(predicted == self.labels))

    def judge(self, model: ir.Model) -> tuple[Judgement, float]:
        """(judgement on the budget, output SQNR) of a candidate."""
        self.count += 1
        outputs = self._outputs(model)
        fidelity = compare_outputs(self.reference, outputs)
        drop = None
        if self.labels is not None:
            drop = self.reference_accuracy - self._accuracy(outputs)
        judgement = self.budget.judge(fidelity, accuracy_drop=drop)
        return judgement, fidelity.sqnr_db
