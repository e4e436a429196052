"""Pad folded into the ``pads`` of the Conv, AveragePool or MaxPool that reads it.

Only constant-mode, non-negative padding of the spatial axes folds, and only where the consumer's
own padding means the same thing:
- Conv pads with zeros: the Pad value must be 0;
- AveragePool: the Pad value must be 0 and the pool must count padding (``count_include_pad=1``,
  or set to 1 when the pool had no padding of its own);
- MaxPool ignores padding (as if -inf): the Pad value must be -inf, or no larger than every input
  value (0 after a Relu), and the Indices output must be unused.
Pools with ``ceil_mode=1`` and padding as large as the kernel are declined.
"""

from __future__ import annotations

import abc
import logging
import math
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
    constant_array,
    register_rule,
)
from graphopt.passes.rewrite_utils import rank, remove_if_dead, single_consumer

__all__ = ["PadIntoConv", "PadIntoPool"]

logger = logging.getLogger(__name__)

# Producers whose outputs are never negative: a 0 pad cannot change a max over them.
_NON_NEGATIVE_PRODUCERS = frozenset({"Relu", "Sigmoid", "Softmax", "Abs", "Exp", "Softplus"})


def _full_pads(node: ir.Node) -> np.ndarray | str:
    """The Pad's amounts as ``[begin_0..begin_r-1, end_0..end_r-1]`` over every axis."""
    pads = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if pads is None:
        return "Pad amounts are not an initializer"
    pads = pads.astype(np.int64).reshape(-1)
    axes_value = node.inputs[3] if len(node.inputs) > 3 else None
    if axes_value is None:
        return pads
    axes = constant_array(axes_value)
    input_rank = rank(node.inputs[0])
    if axes is None or input_rank is None:
        return "Pad axes are not an initializer or the input rank is unknown"
    full = np.zeros(2 * input_rank, dtype=np.int64)
    count = axes.size
    for i, axis in enumerate(axes.reshape(-1).tolist()):
        full[axis % input_rank] = pads[i]
        full[axis % input_rank + input_rank] = pads[i + count]
    return full


def _pad_value(node: ir.Node) -> float | str:
    value = node.inputs[2] if len(node.inputs) > 2 else None
    if value is None or value.name == "":
        return 0.0
    array = constant_array(value)
    if array is None:
        return "Pad value is not an initializer"
    return float(array.reshape(-1)[0]) if array.size else 0.0


def _spatial_pads(full: np.ndarray) -> list[int] | str:
    rank = full.size // 2
    if np.any(full < 0):
        return "Pad crops (negative amounts)"
    if full[0] or full[1] or full[rank] or full[rank + 1]:
        return "Pad pads the batch or channel axis"
    return [int(p) for p in (*full[2:rank], *full[rank + 2 :])]


def _consumer_pads(consumer: ir.Node, spatial: int) -> list[int] | str:
    auto_pad = consumer.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return f"{consumer.op_type} uses auto_pad={auto_pad}"
    pads = list(consumer.attributes.get_ints("pads", ()))
    return pads or [0] * (2 * spatial)


class _PadFoldRule(Rule):
    """Shared check/rewrite; subclasses name their consumers and say when a pad value is fine."""

    anchors = ("Pad",)
    targets: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def value_reason(
        self, pad: ir.Node, consumer: ir.Node, value: float, added: list[int]
    ) -> str | None:
        """Why the consumer cannot take ``added`` padding of ``value`` (None when it can)."""
        ...

    def check(self, node: ir.Node) -> CheckResult:
        output = node.outputs[0]
        consumer = single_consumer(output)
        if consumer is None:
            users = {user.op_type for user, _ in output.uses()}
            if users & self.targets:
                return "Pad output is also used elsewhere or is a graph output"
            return None
        if consumer.op_type not in self.targets or consumer.domain not in ("", "ai.onnx"):
            return None
        if consumer.inputs[0] is not output or output in consumer.inputs[1:]:
            return f"Pad output is not only the data input of the {consumer.op_type}"
        reason = self._reason(node, consumer)
        if isinstance(reason, str):
            return reason
        return Match(node, {"consumer": consumer, "pads": reason})

    def _reason(self, node: ir.Node, consumer: ir.Node) -> list[int] | str:
        mode = node.attributes.get_string("mode", "constant")
        if mode != "constant":
            return f"Pad mode {mode}: only constant padding folds into {consumer.op_type}"
        full = _full_pads(node)
        if isinstance(full, str):
            return full
        spatial = _spatial_pads(full)
        if isinstance(spatial, str):
            return spatial
        value = _pad_value(node)
        if isinstance(value, str):
            return value
        reason = self.value_reason(node, consumer, value, spatial)
        if reason is not None:
            return reason
        own = _consumer_pads(consumer, len(spatial) // 2)
        if isinstance(own, str):
            return own
        if len(own) != len(spatial):
            return f"Pad rank does not match the {consumer.op_type}"
        return [a + b for a, b in zip(own, spatial, strict=True)]

    def rewrite(self, match: Match) -> None:
        node, consumer = match.node, match["consumer"]
        logger.debug("folding Pad %s into %s %s", node.name, consumer.op_type, consumer.name)
        consumer.attributes["pads"] = ir.AttrInt64s("pads", match["pads"])
        if consumer.attributes.get_string("auto_pad", "NOTSET") == "VALID":
            consumer.attributes["auto_pad"] = ir.AttrString("auto_pad", "NOTSET")
        self.adjust(node, consumer)
        consumer.replace_input_with(0, node.inputs[0])
        remove_if_dead(node)

    def adjust(self, pad: ir.Node, consumer: ir.Node) -> None:
        """Consumer attributes to set besides ``pads`` (nothing by default)."""


@register_rule
class PadIntoConv(_PadFoldRule):
    name = "pad_into_conv"
    targets = frozenset({"Conv"})
    description = "constant zero Pad folded into the Conv's pads"

    def value_reason(self, pad, consumer, value, added):
        if value != 0:
            return f"Pad value {value:g} is not 0: Conv pads with zeros"
        return None


def _pool_reason(consumer: ir.Node, added: list[int]) -> str | None:
    if consumer.attributes.get_int("ceil_mode", 0):
        return f"{consumer.op_type} with ceil_mode=1: windows may run past the padding"
    kernel = list(consumer.attributes.get_ints("kernel_shape", ()))
    own = _consumer_pads(consumer, len(kernel))
    if isinstance(own, str) or len(own) != len(added) or len(kernel) * 2 != len(added):
        return None  # reported by the shared check
    total = [a + b for a, b in zip(own, added, strict=True)]
    if any(p >= kernel[i % len(kernel)] for i, p in enumerate(total)):
        return f"{consumer.op_type} padding would reach the kernel size"
    return None


@register_rule
class PadIntoPool(_PadFoldRule):
    name = "pad_into_pool"
    targets = frozenset({"AveragePool", "MaxPool"})
    description = "Pad folded into AveragePool (zeros, counted) or MaxPool (-inf) pads"

    def value_reason(self, pad, consumer, value, added):
        reason = _pool_reason(consumer, added)
        if reason is not None:
            return reason
        if consumer.op_type == "AveragePool":
            return self._average_reason(consumer, value)
        return self._max_reason(pad, consumer, value)

    @staticmethod
    def _average_reason(consumer: ir.Node, value: float) -> str | None:
        if value != 0:
            return f"Pad value {value:g} is not 0: AveragePool pads with zeros"
        if consumer.attributes.get_int("count_include_pad", 0):
            return None
        own = consumer.attributes.get_ints("pads", ())
        if any(own):
            return (
                "AveragePool has its own padding with count_include_pad=0: the Pad's zeros"
                " would stop being counted"
            )
        return None

    @staticmethod
    def _max_reason(pad: ir.Node, consumer: ir.Node, value: float) -> str | None:
        if len(consumer.outputs) > 1 and (
            consumer.outputs[1].uses() or consumer.outputs[1].is_graph_output()
        ):
            return "MaxPool Indices output is used: folding the Pad changes the indices"
        if value == -math.inf:
            return None
        producer = pad.inputs[0].producer()
        if value <= 0 and producer is not None and producer.op_type in _NON_NEGATIVE_PRODUCERS:
            return None
        return (
            f"Pad value {value:g} could change the max: MaxPool padding acts as -inf"
            " (the input is not known to be at least the pad value)"
        )

    def adjust(self, pad: ir.Node, consumer: ir.Node) -> None:
        if consumer.op_type == "AveragePool":
            consumer.attributes["count_include_pad"] = ir.AttrInt64("count_include_pad", 1)
