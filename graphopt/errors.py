"""User-facing errors: each carries one readable line, the CLI prints it and exits with code 2."""

from __future__ import annotations

import re

__all__ = [
    "error_text",
    "reason_line",
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


# Lines that say where in a runtime's C++ sources an error passed, not what went wrong
# (OpenVINO: "Exception from src/inference/src/cpp/core.cpp:84:", "Check 'x' failed at ...:").
_LOCATION_LINE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?"
                            r"|While validating .*:)$")


def error_text(exc: BaseException) -> str:
    """A failure as one line for a record: graphopt's own message, else the exception's
    type and :func:`reason_line`."""
    return str(exc) if isinstance(exc, GraphoptError) else (
        f"{type(exc).__name__}: {reason_line(exc)}")


def reason_line(exc: BaseException) -> str:
    """One line saying why a library call failed: the first line that is not a source
    location, prefixed by the heading it belongs to (``Reshape-17 with a message: ...``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not _LOCATION_LINE.match(line)]
    if not lines:
        return type(exc).__name__
    heading = ""
    for line in lines:
        if not line.endswith(":"):
            return f"{heading}: {line}" if heading else line
        heading = line.rstrip(":").lstrip("- ").strip()
    return heading
