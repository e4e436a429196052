"""``cleanup``: opset upgrade, constant folding, dead code, identities and legacy input lists.

Wraps maintained libraries for what they do well: the onnx version converter for opset
upgrades, onnxscript's optimizer for constant folding, dead-code elimination, constant lifting,
initializer deduplication and common-subexpression elimination, and onnx-ir's common passes.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnx import version_converter
from onnxscript import optimizer

from graphopt.errors import UnsupportedModelError
from graphopt.pass_api import GraphPass, register_pass

__all__ = ["CleanupPass", "DEFAULT_TARGET_OPSET", "upgrade_opset"]

logger = logging.getLogger(__name__)

# Modern enough for per-channel QDQ (13), new-style Reduce/Split inputs, supported everywhere.
DEFAULT_TARGET_OPSET = 17
# Constant folding limits (elements): fold weight-sized constants, not whole activations.
MIN_IR_VERSION = 8
# Initializers at least this large are hidden from the opset converter (it never reads them).
PLACEHOLDER_MIN_BYTES = 1024
_PLACEHOLDER_LOCATION = "graphopt-placeholder-never-read"
FOLD_INPUT_LIMIT = 1 << 22
FOLD_OUTPUT_LIMIT = 1 << 22


def _default_opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))


def upgrade_opset(model: ir.Model, target: int) -> bool:
    """Convert the model's default-domain opset up to ``target`` in place; True if converted.

    The converter only sees the graph: large initializers travel as external-data
    placeholders (never read) and the original tensors are put back afterwards, so the
    conversion costs neither a copy of the weights nor the 2 GB protobuf limit.
    """
    current = _default_opset(model)
    if current >= target:
        return False
    originals = _swap_in_placeholders(model)
    try:
        proto = ir.to_proto(model)
    finally:
        _restore(model, originals)
    try:
        converted = version_converter.convert_version(proto, target)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(
            f"cannot upgrade opset {current} -> {target}: {text}"
        ) from exc
    upgraded = ir.from_proto(converted)
    for name, value in upgraded.graph.initializers.items():
        if name in originals:
            value.const_value = originals[name]
    model.graph = upgraded.graph  # a model's opset imports live on its graph
    # IR 3 required initializers to be listed as inputs; modern opsets need a modern IR.
    model.ir_version = max(model.ir_version, upgraded.ir_version, MIN_IR_VERSION)
    return True


def _swap_in_placeholders(model: ir.Model) -> dict[str, ir.TensorProtocol]:
    """Replace large initializer tensors by unread external-data stand-ins; return originals."""
    originals = {}
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None or tensor.nbytes < PLACEHOLDER_MIN_BYTES:
            continue
        originals[name] = tensor
        value.const_value = ir.ExternalTensor(
            _PLACEHOLDER_LOCATION, offset=0, length=tensor.nbytes, dtype=tensor.dtype,
            shape=tensor.shape, name=name,
        )
    return originals


def _restore(model: ir.Model, originals: dict[str, ir.TensorProtocol]) -> None:
    for name, tensor in originals.items():
        model.graph.initializers[name].const_value = tensor


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

    def _fold(self, model: ir.Model) -> int:
        """Constant folding to a fixed point, then constants lifted, deduplicated, CSE."""
        before = _count_nodes(model)
        for _ in range(max(1, self.iterations)):
            result = optimizer.fold_constants_ir(
                model,
                onnx_shape_inference=False,
                input_size_limit=FOLD_INPUT_LIMIT,
                output_size_limit=FOLD_OUTPUT_LIMIT,
            )
            common_passes.RemoveUnusedNodesPass()(model)
            if not result.modified:
                break
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        common_passes.DeduplicateInitializersPass()(model)
        common_passes.CommonSubexpressionEliminationPass()(model)
        common_passes.RemoveUnusedNodesPass()(model)
        return before - _count_nodes(model)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        nodes_before = _count_nodes(model)
        modified = False
        if upgrade_opset(model, self.target_opset):
            self.stats["opset_upgraded_to"] = self.target_opset
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
        common_passes.RemoveUnusedNodesPass()(model)
        self.stats["nodes_removed"] = nodes_before - _count_nodes(model)
        return ir.passes.PassResult(model, modified=modified)
