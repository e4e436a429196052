"""``lowrank``: low-rank splitting of Conv, Gemm and MatMul layers (SVD, Tucker-2)."""

from graphopt.passes.lowrank import lowrank_pass
from graphopt.passes.lowrank.lowrank_pass import LayerDecision, LowRankPass

__all__ = ["LayerDecision", "LowRankPass", "lowrank_pass"]
