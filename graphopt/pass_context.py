"""What the pipeline hands a data-aware pass before ``call``: data, evaluator, latency probe.

A pass declares what it needs in ``needs`` (a subset of :data:`NEEDS`); the pipeline checks the
needs against its :class:`PassContext` and sets ``graph_pass.context`` before calling it.

- ``calibration``: a :class:`~graphopt.calibration.DataSource` of calibration batches. When the
  user gave none the pass gets seeded random data and the run records a warning saying so.
- ``evaluator``: an :class:`~graphopt.evaluate.Evaluator` on labelled data (task accuracy).
- ``latency``: a :class:`~graphopt.latency.LatencyProbe` on the deployment target.

Unmet ``evaluator`` or ``latency`` needs are one :class:`~graphopt.errors.GraphoptError` line
naming the pass. ``seed`` seeds whatever a pass draws at random; ``work_dir`` is a folder the
pass may write scratch files to (removed after the run); ``budget`` is the run's fidelity
budget, for passes that search for the most compression it allows. ``progress`` receives
``(step, done, total)`` while a pass works through something long (calibration batches,
sensitivity trials); the pipeline points it at its own progress report.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

from graphopt.budget import Budget
from graphopt.calibration import DataSource
from graphopt.evaluate import Evaluator
from graphopt.latency import LatencyProbe

__all__ = ["NEEDS", "PassContext", "RANDOM_CALIBRATION_BATCHES", "StepProgress"]

NEEDS = frozenset({"calibration", "evaluator", "latency"})
RANDOM_CALIBRATION_BATCHES = 16
"""Batches of seeded random data a pass that needs calibration gets when the user gave none."""

StepProgress = Callable[[str, int, int], None]
"""``(step, done, total)``: what a pass is doing and how far it got."""


@dataclasses.dataclass
class PassContext:
    """Everything a data-aware pass may use besides the model (see the module docstring)."""

    calibration: DataSource | None = None
    evaluator: Evaluator | None = None
    latency: LatencyProbe | None = None
    budget: Budget = dataclasses.field(default_factory=Budget)
    seed: int = 0
    work_dir: Path | None = None
    calibration_is_random: bool = False
    progress: StepProgress | None = None

    def step(self, what: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback reporting progress on ``what`` (a no-op without
        ``progress``)."""
        return functools.partial(self._report, what)

    def _report(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)
