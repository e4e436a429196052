"""Which data a run calibrates on, verifies on and scores accuracy on, from what the user gave.

Fidelity is measured on data the calibration never saw:

==========================  ===========================  ================================
given                       calibration                  verification (fidelity)
==========================  ===========================  ================================
``--inputs`` (and maybe     ``--calib``, whole           ``--inputs``
``--calib``)
``--calib`` only            ``--calib`` minus held-out   the held-out part of ``--calib``
neither                     none (passes that need it    labelled test data when the model
                            get random data, warned)     is ``zoo:digits``, else random
                                                         inputs
==========================  ===========================  ================================

Task accuracy is scored on the first labelled source among: ``--inputs``, ``zoo:digits``' test
split (when the model or the calibration data is ``zoo:digits``), the held-out part of a
labelled ``--calib``.
"""

from __future__ import annotations

import dataclasses
import os

import onnx_ir as ir

from graphopt.calibration import DataSource, SampleData, open_data, split_holdout
from graphopt.evaluate import Evaluator

__all__ = ["RunData", "resolve_run_data"]

_DIGITS_MODEL = "zoo:digits"
_DIGITS_TEST = "zoo:digits:test"


@dataclasses.dataclass
class RunData:
    calibration: DataSource | None
    verification: SampleData | None
    evaluator: Evaluator | None


def resolve_run_data(
    model: ir.Model,
    model_spec: str | os.PathLike,
    *,
    calib: str | os.PathLike | None = None,
    inputs: str | os.PathLike | None = None,
    preprocess: str | None = None,
    seed: int = 0,
) -> RunData:
    """Open the data the user named and split it as the module docstring says."""
    calibration = open_data(calib, model, preprocess=preprocess) if calib else None
    verification = open_data(inputs, model, preprocess=preprocess) if inputs else None
    labelled: SampleData | None = verification if _has_labels(verification) else None
    if verification is None and calibration is not None:
        calibration, verification = split_holdout(calibration, seed=seed)
    uses_digits = os.fspath(model_spec) == _DIGITS_MODEL or (
        calib is not None and os.fspath(calib) == _DIGITS_MODEL)
    if labelled is None and uses_digits:
        labelled = open_data(_DIGITS_TEST, model)
        if verification is None:
            verification = labelled
    if labelled is None and _has_labels(verification):
        labelled = verification
    evaluator = Evaluator(labelled) if labelled is not None else None
    return RunData(calibration, verification, evaluator)


def _has_labels(data: SampleData | None) -> bool:
    return data is not None and data.labels is not None
