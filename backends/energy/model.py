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

from .base import EnergyReading

if TYPE_CHECKING:
    from graphopt.cost import ModelCost

__all__ = [
    "EnergyTable",
    "HOROWITZ_45NM",
    "ModelEnergyEstimator",
    "PRECISIONS",
    "DEFAULT_PROCESS_NM",
    "SOURCE",
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

PRECISIONS = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "int8": "int8"}
"""Accepted precisions and the table row that prices them."""


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
        self, cost: ModelCost, precision: str = "fp32", batch_size: int = 1
    ) -> EnergyReading:
        """Joules per inference of ``cost`` at ``precision`` with weights shared by a batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        domains = {
            "compute": cost.macs * self.mac_joules(precision),
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
            note=self._note(precision),
        )

    def _note(self, precision: str) -> str:
        priced = _row(precision)
        as_ = f" priced as {priced}" if priced != precision else ""
        return (
            f"lower bound on compute and data movement, not measured: Horowitz ISSCC 2014"
            f" 45 nm table, {precision}"
            f"{as_}, logic and SRAM scaled x{self.logic_scale:.3f} to {self.process_nm:g} nm "
            f"(linear in feature size), DRAM unscaled; weights from {self.weight_memory} once "
            f"per batch, activations x{self.activation_traffic:g} via {self.activation_memory}"
        )


def _row(precision: str) -> str:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}"
        ) from None
