"""``fuse``: the catalogue of lossless rewrite rules (one module per family of rules).

Every module in this package that defines rules registers them with ``@register_rule``;
importing the package imports them all, so adding a rule is adding a module or a class.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Literal

import onnx_ir as ir

from graphopt.errors import PipelineSpecError
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.fusion.framework import RuleSet, registered_rules, registered_steps
from graphopt.passes.rewrite_utils import forget_names

__all__ = ["FusePass"]

_FRAMEWORK_MODULES = {"framework"}
_STANDALONE_BN_RULE = "bn_to_affine"

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _FRAMEWORK_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


@register_pass("fuse")
@dataclasses.dataclass(kw_only=True)
class FusePass(GraphPass):
    """Apply the lossless rewrite rules to a fixed point.

    ``rules`` selects rules by name (default: every rule enabled by default), ``skip`` removes
    some; ``standalone_bn=affine`` rewrites a BatchNormalization with nothing to fold into as
    Mul + Add instead of keeping the single node.
    """

    summary = "BN/bias/scale folding, MatMul+Add->Gemm, Pad folding, layout and legacy tidy-ups"
    rules: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    max_rounds: int = 16
    standalone_bn: Literal["keep", "affine"] = "keep"

    @classmethod
    def catalogue(cls) -> dict[str, dict]:
        """Every rule and step by name: what it does, rule or step, on by default or not
        (``graphopt passes fuse`` shows it)."""
        entries = {}
        for kind, registry in (("rule", registered_rules()), ("step", registered_steps())):
            for name, item in registry.items():
                entries[name] = {"kind": kind, "description": item.description,
                                 "default": getattr(item, "default_enabled", True)}
        return entries

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise PipelineSpecError(f"fuse(max_rounds={self.max_rounds}): must be at least 1")

    def _selected(self):
        catalogue = {**registered_rules(), **registered_steps()}
        unknown = [n for n in (*self.rules, *self.skip) if n not in catalogue]
        if unknown:
            raise PipelineSpecError(
                f"fuse: unknown rule(s) {', '.join(unknown)} (rules: {', '.join(catalogue)})"
            )
        defaults = [n for n, r in catalogue.items() if getattr(r, "default_enabled", True)]
        if self.standalone_bn == "affine":
            defaults.append(_STANDALONE_BN_RULE)
        names = [n for n in (self.rules or defaults) if n not in self.skip]
        rules = [registered_rules()[n]() for n in names if n in registered_rules()]
        steps = [registered_steps()[n]() for n in names if n in registered_steps()]
        return rules, steps

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)  # earlier passes may have added names
        rules, steps = self._selected()
        rule_set = RuleSet(rules, max_rounds=self.max_rounds)
        for iteration in range(self.max_rounds):
            run = rule_set.apply(model.graph)
            self.stats.update(run.applied)
            if iteration > 0 and not run.applied:
                break  # the steps already ran on exactly this graph
            removed = 0
            for step in steps:
                count = step.run(model)
                self.stats[step.name] += count
                removed += count
            if not removed:
                break
        for rule, node, reason in run.declined:
            self.explain(f"{rule} at {node}: {reason}")
        forget_names(model.graph)
        self.stats = +self.stats  # drop steps that removed nothing
        return ir.passes.PassResult(model, modified=sum(self.stats.values()) > 0)
