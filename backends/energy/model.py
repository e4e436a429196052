"""Analytical lower bound on energy from the cost model (``source="model:compute-bound"``).

It prices arithmetic and data movement only, so on a CPU it is roughly an order of magnitude
below what the package draws, and it ranks configurations by MAC precision rather than by what
runs. It is therefore shown *beside* the headline figure (a measured meter, or the time x power
estimate of :mod:`graphopt.backends.energy.estimate`), never as the headline.

Energy table (Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V), in picojoules:

=========================  ========  =======
operation                  multiply  add
=========================  ========  =======
fp32                       3.7       0.9
fp16 (bf16 priced as fp16) 1.1       0.4
int8                       0.2       0.03
=========================  ========  =======

Memory: on-chip SRAM ~5 pJ per 32-bit word (1.25 pJ/byte), DRAM ~640 pJ per 32-bit word
(160 pJ/byte).

Process scaling (an assumption, stated in every reading's note): arithmetic and SRAM energy
scale linearly with the feature size (switched capacitance shrinks with the node while supply
voltage has stayed near 0.7-0.9 V since 28 nm), so at the default 7 nm they are
7/45 = 0.156 of the table. DRAM energy is dominated by the DRAM array and the off-chip
interface, not the logic node, so it is not scaled.

Precision: every MAC node is priced at its own arithmetic precision, from the cost model
(:mod:`graphopt.precision`): int8 QDQ and integer nodes at int8, weight-only and float nodes
at their float type (fp64 priced as fp32, still a lower bound). ``precision`` is what the
runtime ran: ``fp16``/``bf16`` lowers the float nodes and leaves int8 ones at int8, ``int8``
prices every MAC at int8 (a runtime that quantizes everything), and ``None``, ``fp32`` or a
graph's own name (``mixed``, ``int8-weights`` ...) keeps each node's. MACs no node accounts
for (a hand-written cost) count as fp32. The note says how many MACs were priced at what.

Traffic model: one inference performs ``cost.macs`` multiply-accumulates (one multiply and one
add each); each activation byte is written once and read once (``activation_traffic = 2``)
through on-chip SRAM; weights are fetched once per batch from DRAM and shared by the batch's
inferences. Bytes are the model's stored data types, as counted by the cost model, which counts
symbolic (batch) dimensions as 1: ``cost`` is taken to describe one inference.

This is an order-of-magnitude estimate of compute and data movement only: it ignores static
power, control overhead, caches missing or hitting differently and runtime fusions, so it
carries no uncertainty (``uncertainty_joules=None``) and is always labelled
``source="model:compute-bound"``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from graphopt.precision import GRAPH_PRECISIONS

from .base import EnergyReading

if TYPE_CHECKING:
    from graphopt.cost import ModelCost

__all__ = [
    "EnergyTable",
    "HOROWITZ_45NM",
    "ModelEnergyEstimator",
    "PRECISIONS",
    "RUNTIME_PRECISIONS",
    "DEFAULT_PROCESS_NM",
    "SOURCE",
    "priced_macs",
]

SOURCE = "model:compute-bound"

DEFAULT_PROCESS_NM = 7.0
PJ = 1e-12

MemoryLevel = Literal["sram", "dram"]


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Per-operation energies in picojoules at ``process_nm``."""

    process_nm: float
    mult_pj: dict[str, float]
    add_pj: dict[str, float]
    sram_pj_per_word: float
    dram_pj_per_word: float
    word_bytes: int = 4


HOROWITZ_45NM = EnergyTable(
    process_nm=45.0,
    mult_pj={"fp32": 3.7, "fp16": 1.1, "int8": 0.2},
    add_pj={"fp32": 0.9, "fp16": 0.4, "int8": 0.03},
    sram_pj_per_word=5.0,
    dram_pj_per_word=640.0,
)

PRECISIONS = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "fp64": "fp32", "int8": "int8"}
"""Arithmetic precisions and the table row that prices them."""
RUNTIME_PRECISIONS = frozenset({*PRECISIONS, *GRAPH_PRECISIONS})
"""What :meth:`ModelEnergyEstimator.estimate` accepts as the precision the runtime ran."""
_LOWERED = ("fp16", "bf16")


class ModelEnergyEstimator:
    """Estimate energy per inference from a :class:`~graphopt.cost.ModelCost`."""

    def __init__(
        self,
        *,
        process_nm: float = DEFAULT_PROCESS_NM,
        table: EnergyTable = HOROWITZ_45NM,
        weight_memory: MemoryLevel = "dram",
        activation_memory: MemoryLevel = "sram",
        activation_traffic: float = 2.0,
    ) -> None:
        if process_nm <= 0:
            raise ValueError(f"process_nm must be > 0, got {process_nm}")
        self.process_nm = process_nm
        self.table = table
        self.weight_memory = weight_memory
        self.activation_memory = activation_memory
        self.activation_traffic = activation_traffic

    @property
    def logic_scale(self) -> float:
        """Factor applied to arithmetic and SRAM energies: ``process_nm / table.process_nm``."""
        return self.process_nm / self.table.process_nm

    def mac_joules(self, precision: str) -> float:
        """Energy of one multiply-accumulate at ``precision`` at this process node."""
        row = _row(precision)
        return (self.table.mult_pj[row] + self.table.add_pj[row]) * self.logic_scale * PJ

    def byte_joules(self, level: MemoryLevel) -> float:
        """Energy to move one byte to or from ``level``."""
        if level == "sram":
            return self.table.sram_pj_per_word / self.table.word_bytes * self.logic_scale * PJ
        if level == "dram":
            return self.table.dram_pj_per_word / self.table.word_bytes * PJ
        raise ValueError(f"unknown memory level {level!r}; expected 'sram' or 'dram'")

    def estimate(
        self, cost: ModelCost, precision: str | None = None, batch_size: int = 1
    ) -> EnergyReading:
        """Joules per inference of ``cost`` run at ``precision`` (module docstring) with
        weights shared by a batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        macs = priced_macs(cost, precision)
        domains = {
            "compute": sum(count * self.mac_joules(p) for p, count in macs.items()),
            "weights": cost.weight_bytes * self.byte_joules(self.weight_memory) / batch_size,
            "activations": (
                cost.activation_bytes * self.activation_traffic
                * self.byte_joules(self.activation_memory)
            ),
        }
        return EnergyReading(
            joules_per_inference=sum(domains.values()),
            uncertainty_joules=None,
            source=SOURCE,
            domains=domains,
            window_seconds=None,
            inferences=batch_size,
            note=self._note(macs, precision),
        )

    def _note(self, macs: dict[str, int], precision: str | None) -> str:
        priced = ", ".join(
            f"{count:,} at {p}" + (f" priced as {_row(p)}" if _row(p) != p else "")
            for p, count in sorted(macs.items(), key=lambda item: -item[1])
        ) or "none"
        how = ("every MAC run in int8" if precision == "int8"
               else f"float nodes lowered to {precision}" if precision in _LOWERED
               else "each node at its own precision")
        return (
            f"lower bound on compute and data movement, not measured: Horowitz ISSCC 2014"
            f" 45 nm table, MACs {priced} ({how})"
            f", logic and SRAM scaled x{self.logic_scale:.3f} to {self.process_nm:g} nm "
            f"(linear in feature size), DRAM unscaled; weights from {self.weight_memory} once "
            f"per batch, activations x{self.activation_traffic:g} via {self.activation_memory}"
        )


def priced_macs(cost: ModelCost, precision: str | None = None) -> dict[str, int]:
    """MACs per inference by the arithmetic precision they run at when the runtime ran
    ``precision`` (module docstring); ``ValueError`` for a precision not known."""
    if precision is not None and precision not in RUNTIME_PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {sorted(RUNTIME_PRECISIONS)}"
        )
    if precision == "int8":
        return {"int8": cost.macs} if cost.macs else {}
    by_node = cost.macs_by_arithmetic
    rest = cost.macs - sum(by_node.values())
    if rest > 0:
        by_node["fp32"] = by_node.get("fp32", 0) + rest
    if precision not in _LOWERED:
        return {p: count for p, count in by_node.items() if count}
    lowered = {"int8": by_node.get("int8", 0),
               precision: sum(c for p, c in by_node.items() if p != "int8")}
    return {p: count for p, count in lowered.items() if count}


def _row(precision: str) -> str:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}"
        ) from None
