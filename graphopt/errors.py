"""User-facing errors: each carries one readable line, the CLI prints it and exits with code 2."""

from __future__ import annotations

__all__ = [
    "GraphoptError",
    "ModelLoadError",
    "UnsafeExternalDataError",
    "PipelineSpecError",
    "VerificationError",
    "BudgetError",
    "UnsupportedModelError",
    "BackendUnavailableError",
    "OutputError",
]


class GraphoptError(Exception):
    """Base class of errors caused by the user's input rather than by a bug in graphopt."""


class ModelLoadError(GraphoptError):
    """The model file is missing, not ONNX, truncated or otherwise unreadable."""


class UnsafeExternalDataError(ModelLoadError):
    """An external-data location points outside the model's folder."""


class PipelineSpecError(GraphoptError):
    """A pipeline spec names an unknown pass, preset or option, or a value of the wrong type."""


class VerificationError(GraphoptError):
    """A lossless pass changed the model's outputs beyond tolerance."""


class BudgetError(VerificationError):
    """A lossy pass moved the outputs (or the task accuracy) beyond the run's fidelity budget."""


class UnsupportedModelError(GraphoptError):
    """The model uses an operator, opset or data type that a pass cannot handle."""


class BackendUnavailableError(GraphoptError):
    """A requested backend is not installed or has no device here."""


class OutputError(GraphoptError):
    """An output path cannot be written, is not a regular file, or would replace an input."""
