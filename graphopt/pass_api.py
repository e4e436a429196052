"""The pass contract and the registry of named passes and presets.

A graphopt pass is an ``onnx_ir.passes.InPlacePass`` whose configuration is keyword-only
dataclass fields, so a spec string such as ``quantize(method=entropy,per_channel=true)`` maps
one-to-one onto the constructor. During ``call`` a pass counts what it changed in ``self.stats``
(for example ``{"conv_bn": 53}``); the pipeline adds timings, sizes and fidelity.

Lossy passes set ``lossless = False`` and are judged on the run's fidelity budget; passes that
use data, labels or latency declare ``needs`` and read ``self.context`` (a
:class:`~graphopt.pass_context.PassContext`).

Example::

    @register_pass("strip_docs")
    @dataclasses.dataclass(kw_only=True)
    class StripDocsPass(GraphPass):
        keep_names: bool = True

        def call(self, model):
            ...
            self.stats["doc_strings"] += n
            return ir.passes.PassResult(model, modified=n > 0)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from typing import ClassVar

import onnx_ir as ir

from graphopt.errors import PipelineSpecError
from graphopt.graph_checks import structural_problems

__all__ = [
    "GraphPass",
    "register_pass",
    "register_preset",
    "unregister_pass",
    "unregister_preset",
    "scoped_registration",
    "get_pass_class",
    "get_preset",
    "pass_names",
    "preset_names",
    "Preset",
]


class GraphPass(ir.passes.InPlacePass):
    """Base of every registered pass.

    Subclasses are keyword-only dataclasses (their fields are the options) and set the class
    variables below. ``lossless`` passes must keep outputs equal within verification tolerance.
    """

    name: ClassVar[str] = ""
    lossless: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    #: What the pass needs from its :class:`~graphopt.pass_context.PassContext`:
    #: ``calibration``, ``evaluator``, ``latency``.
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Set by the pipeline before ``call`` (or by :meth:`with_context`); not an option.
    context = None

    def __call__(self, model_or_result, /):
        self.stats: collections.Counter[str] = collections.Counter()
        self.explanations: list[str] = []
        return super().__call__(model_or_result)

    def ensures(self, model: ir.Model) -> None:
        """Postcondition of every pass: the graph is still well formed (no dangling reads)."""
        problems = structural_problems(model.graph)
        if problems:
            raise ir.passes.PostconditionError(
                f"pass {self.name!r} left a malformed graph: " + "; ".join(problems)
            )

    def with_context(self, context) -> GraphPass:
        """Hand the pass its :class:`~graphopt.pass_context.PassContext` (returns ``self``)."""
        self.context = context
        return self

    def explain(self, message: str) -> None:
        """Record why a candidate rewrite was declined (shown by ``--explain``)."""
        self.explanations.append(message)

    def options(self) -> dict[str, object]:
        """The pass's configuration as a plain dict (for reports)."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    spec: str
    description: str


_PASSES: dict[str, type[GraphPass]] = {}
_PRESETS: dict[str, Preset] = {}
_PASS_PACKAGE = "graphopt.passes"


def register_pass(name: str):
    """Class decorator: make a pass available by ``name`` in specs and on the CLI."""

    def decorate(cls: type[GraphPass]) -> type[GraphPass]:
        if name in _PASSES and _PASSES[name] is not cls:
            raise ValueError(f"pass {name!r} is already registered by {_PASSES[name]!r}")
        cls.name = name
        _PASSES[name] = cls
        return cls

    return decorate


def register_preset(name: str, spec: str, description: str) -> None:
    """Name a pipeline spec (presets may contain other presets)."""
    _PRESETS[name] = Preset(name, spec, description)


def unregister_pass(name: str) -> None:
    """Forget pass ``name`` (no error when it is not registered)."""
    _PASSES.pop(name, None)


def unregister_preset(name: str) -> None:
    """Forget preset ``name`` (no error when it is not registered)."""
    _PRESETS.pop(name, None)


@contextlib.contextmanager
def scoped_registration(
    passes: Mapping[str, type[GraphPass]] | None = None,
    presets: Mapping[str, tuple[str, str]] | None = None,
) -> Iterator[None]:
    """Register ``passes`` (name -> class) and ``presets`` (name -> (spec, description)) for
    the block only, e.g. test passes that must not outlive their test module."""
    passes, presets = dict(passes or {}), dict(presets or {})
    try:
        for name, cls in passes.items():
            register_pass(name)(cls)
        for name, (spec, description) in presets.items():
            register_preset(name, spec, description)
        yield
    finally:
        for name in passes:
            unregister_pass(name)
        for name in presets:
            unregister_preset(name)


def _ensure_loaded() -> None:
    importlib.import_module(_PASS_PACKAGE)


def get_pass_class(name: str) -> type[GraphPass]:
    _ensure_loaded()
    try:
        return _PASSES[name]
    except KeyError:
        known = ", ".join(sorted(_PASSES))
        raise PipelineSpecError(f"unknown pass {name!r} (known passes: {known})") from None


def get_preset(name: str) -> Preset | None:
    _ensure_loaded()
    return _PRESETS.get(name)


def pass_names() -> list[str]:
    _ensure_loaded()
    return sorted(_PASSES)


def preset_names() -> list[str]:
    _ensure_loaded()
    return list(_PRESETS)
