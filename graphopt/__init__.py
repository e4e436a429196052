"""graphopt: ONNX graph optimizer and benchmarker.

The Python face in three lines::

    import graphopt
    model, report = graphopt.optimize("zoo:resnet50", "lossless")
    graphopt.save_model(model, "resnet50.opt.onnx")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "optimize", "Pipeline", "resolve_model", "load_model", "save_model"]

_LAZY = {
    "Pipeline": "graphopt.pipeline",
    "resolve_model": "graphopt.model_io",
    "load_model": "graphopt.model_io",
    "save_model": "graphopt.model_io",
}

if TYPE_CHECKING:
    import onnx_ir as ir

    from graphopt.pipeline import PipelineReport


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graphopt' has no attribute {name!r}")


def optimize(
    model: str | ir.Model, spec: str = "lossless", *, verify: bool = True
) -> tuple[ir.Model, PipelineReport]:
    """Load ``model`` (path, ``zoo:NAME`` or an onnx-ir model), run ``spec`` and return both."""
    from graphopt.model_io import resolve_model
    from graphopt.pipeline import Pipeline

    loaded = resolve_model(model) if isinstance(model, str) else model
    report = Pipeline.from_spec(spec).run(loaded, verify=verify)
    return loaded, report
