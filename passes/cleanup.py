"""``cleanup``: opset upgrade, constant folding, dead code, identities and legacy input lists.

Opset upgrades are adapted on the IR where the operators are known and otherwise left to the
onnx version converter (``passes/opset_upgrade.py``); maintained libraries do what they do
well: onnxscript's optimizer for constant folding, onnx-ir's common passes for dead code,
identities and constant lifting. (Common-subexpression elimination and initializer
deduplication are steps of ``fuse``.)
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import optimizer

from graphopt.errors import PipelineSpecError
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.layout_folding import fold_layout_constants
from graphopt.passes.opset_upgrade import upgrade_opset

__all__ = ["CleanupPass", "DEFAULT_TARGET_OPSET"]

logger = logging.getLogger(__name__)

# Modern enough for per-channel QDQ (13), new-style Reduce/Split inputs, supported everywhere.
DEFAULT_TARGET_OPSET = 17
# Constant folding limits (elements): fold weight-sized constants, not whole activations.
FOLD_INPUT_LIMIT = 1 << 22
FOLD_OUTPUT_LIMIT = 1 << 22


def _remove_inference_dropouts(model: ir.Model) -> int:
    """Dropout without a training flag and without a used mask is an identity at inference."""
    removed = 0
    for node in list(model.graph):
        if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
            continue
        training = node.inputs[2] if len(node.inputs) > 2 else None
        if training is not None:
            flag = training.const_value
            if flag is None or bool(flag.numpy().item()):
                continue
        if len(node.outputs) > 1 and node.outputs[1].uses():
            continue
        if len(node.outputs) > 1 and node.outputs[1].is_graph_output():
            continue
        output, source = node.outputs[0], node.inputs[0]
        if output.is_graph_output() and (source.is_graph_input() or source.is_graph_output()):
            continue  # keep a Dropout that is all that separates an input from an output
        if output.is_graph_output():
            _rename_to_output(source, output)
        output.replace_all_uses_with(source, replace_graph_outputs=True)
        model.graph.remove(node, safe=True)
        removed += 1
    return removed


def _rename_to_output(source: ir.Value, output: ir.Value) -> None:
    """Keep graph output names stable when the producer of an output changes."""
    name = output.name
    output.name = None
    source.name = name


def _count_nodes(model: ir.Model) -> int:
    return sum(1 for _ in model.graph)


@register_pass("cleanup")
@dataclasses.dataclass(kw_only=True)
class CleanupPass(GraphPass):
    """Upgrade old opsets, fold constants, remove dead code, identities and input-listed weights."""

    summary = "opset upgrade, constant folding, dead code, Identity/Dropout, initializer inputs"
    target_opset: int = DEFAULT_TARGET_OPSET
    fold_constants: bool = True
    iterations: int = 2

    def __post_init__(self) -> None:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
        if not 1 <= self.target_opset <= newest:
            raise PipelineSpecError(f"cleanup(target_opset={self.target_opset}): expected an"
                                    f" opset from 1 to {newest} (this onnx's newest)")
        if self.iterations < 1:
            raise PipelineSpecError(f"cleanup(iterations={self.iterations}): must be at least 1")

    def requires(self, model: ir.Model) -> None:
        # The default target only ever raises old opsets; an explicit lower one would be
        # silently ignored, so it is refused (cleanup never lowers an opset).
        source = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
        if self.target_opset < source and self.target_opset != DEFAULT_TARGET_OPSET:
            raise PipelineSpecError(
                f"cleanup(target_opset={self.target_opset}): the model is at opset {source};"
                " cleanup raises opsets, never lowers them")

    def _fold(self, model: ir.Model) -> int:
        """Constant folding to a fixed point (numpy for data movement, onnxscript for the
        rest), then the remaining Constant nodes lifted to initializers."""
        before = _count_nodes(model)
        fold_layout_constants(model)
        for _ in range(self.iterations):
            result = optimizer.fold_constants_ir(
                model,
                onnx_shape_inference=False,
                input_size_limit=FOLD_INPUT_LIMIT,
                output_size_limit=FOLD_OUTPUT_LIMIT,
            )
            if not result.modified:
                break
            common_passes.RemoveUnusedNodesPass()(model)
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        common_passes.RemoveUnusedNodesPass()(model)
        return before - _count_nodes(model)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        nodes_before = _count_nodes(model)
        modified = False
        method = upgrade_opset(model, self.target_opset)
        if method is not None:
            self.stats["opset_upgraded_to"] = self.target_opset
            self.stats[f"opset_upgrade_{method}"] = 1
            modified = True
        listed = sum(1 for v in model.graph.inputs if v.name in model.graph.initializers)
        if common_passes.RemoveInitializersFromInputsPass()(model).modified:
            self.stats["initializer_inputs_removed"] = listed
            modified = True
        dropouts = _remove_inference_dropouts(model)
        if dropouts:
            self.stats["dropout_removed"] = dropouts
            modified = True
        identities_before = sum(1 for n in model.graph if n.op_type == "Identity")
        if common_passes.IdentityEliminationPass()(model).modified:
            identities_after = sum(1 for n in model.graph if n.op_type == "Identity")
            self.stats["identity_removed"] = identities_before - identities_after
            modified = True
        if self.fold_constants:
            folded = self._fold(model)
            if folded:
                self.stats["folded_or_dead_nodes"] = folded
                modified = True
        else:
            common_passes.RemoveUnusedNodesPass()(model)
        self.stats["nodes_removed"] = nodes_before - _count_nodes(model)
        return ir.passes.PassResult(model, modified=modified)
