"""Task accuracy: top-1 accuracy of a classifier on labelled data.

An :class:`Evaluator` holds a labelled data source (an ``.npz`` with a ``labels`` array, or
``zoo:digits:test``) and scores any model on it through the oracle (onnxruntime, graph
optimizations off), streamed batch by batch. The pipeline scores the original and every lossy
pass, and a budget's ``accuracy_drop<=`` term judges the difference in percentage points.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.calibration import DataSource
from graphopt.errors import GraphoptError

__all__ = ["Evaluator"]


class Evaluator:
    """Top-1 accuracy (percent) of the class scores in ``output`` (default: the first output
    shaped ``[N, classes]``) against ``data.labels``."""

    def __init__(self, data: DataSource, *, output: str | None = None) -> None:
        if data.labels is None:
            raise GraphoptError(f"{data.description}: no labels to measure accuracy with")
        self.data = data
        self.output = output
        self.labels = np.asarray(data.labels)
        self.description = data.description

    def _scores_name(self, session) -> str:
        outputs = session.get_outputs()
        if self.output is not None:
            if self.output not in {o.name for o in outputs}:
                raise GraphoptError(f"accuracy: the model has no output {self.output!r}")
            return self.output
        for meta in outputs:
            shape = meta.shape
            if len(shape) >= 2 and all(d == 1 for d in shape[2:] if isinstance(d, int)):
                return meta.name
        raise GraphoptError("accuracy: no output shaped [N, classes] to score")

    def accuracy(self, model: ir.Model) -> float:
        """Top-1 accuracy of ``model`` on the labelled data, in percent."""
        session = oracle.make_session(model)
        name = self._scores_name(session)
        correct = seen = 0
        for feed in self.data:
            (scores,) = session.run([name], feed)
            predicted = scores.reshape(scores.shape[0], -1).argmax(axis=1)
            truth = self.labels[seen:seen + len(predicted)]
            if len(truth) != len(predicted):
                raise GraphoptError(f"{self.description}: more predictions than labels")
            correct += int(np.sum(predicted == truth))
            seen += len(predicted)
        if seen != len(self.labels):
            raise GraphoptError(f"{self.description}: {seen} predictions for"
                                f" {len(self.labels)} labels")
        return 100.0 * correct / seen
