"""Accuracy-aware mixed precision: keep the fewest, most sensitive layers float for a budget.

1. The fully quantized model is tried first; if it keeps the run's budget, nothing stays float.
2. Sensitivity: each layer is quantized alone (every other layer float) and the output SQNR
   on the calibration data is measured; the lower it is, the more the layer costs.
3. The layers are kept float in order of cost, the smallest such prefix that keeps the budget
   found by bisection (about log2(layers) more trials).

Trials run on calibration data, never on the data the pipeline verifies on: the budget's
output terms (``sqnr``, ``cosine``, ``top1``, ``max_rel``) against the float model's outputs,
and ``accuracy_drop`` on the calibration labels when the calibration data has them (otherwise
that term is left to the pipeline's own judgement and the explanation says so).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import onnx_ir as ir

from graphopt.budget import Budget
from graphopt.trials import BudgetTrials

__all__ = ["MixedSearch", "search_float_layers"]


@dataclasses.dataclass
class MixedSearch:
    float_layers: set[int]
    trials: int
    explanations: list[str]


def search_float_layers(model: ir.Model, quantized_except: Callable[[set[int]], ir.Model],
                        names: Sequence[str], data, budget: Budget,
                        progress: Callable[[int, int], None] | None = None) -> MixedSearch:
    """Which layers (indices into ``names``) to keep float so that the budget holds;
    ``progress`` gets ``(layers judged, layers)`` during the sensitivity sweep."""
    trials = BudgetTrials(model, data, getattr(data, "labels", None), budget)
    explanations = []
    if budget.term("accuracy_drop") is not None and trials.labels is None:
        explanations.append("mixed precision: the calibration data has no labels, so"
                            " accuracy_drop is judged by the pipeline only")
    everything = set(range(len(names)))
    judged, sqnr = trials.judge(quantized_except(set()))
    if judged.ok:
        return MixedSearch(set(), trials.count, explanations)
    costs = []
    for index in range(len(names)):
        _, alone = trials.judge(quantized_except(everything - {index}))
        costs.append((alone, index))
        if progress is not None:
            progress(index + 1, len(names))
    costs.sort()
    order = [index for _, index in costs]
    low, high = 1, len(order)  # the smallest prefix that keeps the budget is in [low, high]
    while low < high:
        middle = (low + high) // 2
        ok, _ = trials.judge(quantized_except(set(order[:middle])))
        if ok.ok:
            high = middle
        else:
            low = middle + 1
    kept = set(order[:low])
    final, final_sqnr = trials.judge(quantized_except(kept))
    by_index = dict((index, alone) for alone, index in costs)
    for index in order[:low]:
        alone = by_index[index]
        cost = "inf" if math.isinf(alone) else f"{alone:.1f} dB"
        explanations.append(f"{names[index]} kept float for the budget {budget}: quantized"
                            f" alone it leaves {cost} of output SQNR")
    if not final.ok:
        explanations.append(f"mixed precision: even with {len(kept)} layers float the budget"
                            f" does not hold on calibration data ({'; '.join(final.failures)})")
    explanations.append(f"mixed precision: fully quantized {sqnr:.1f} dB, with {len(kept)} of"
                        f" {len(names)} layers float {final_sqnr:.1f} dB on calibration data,"
                        f" {trials.count} trials")
    return MixedSearch(kept, trials.count, explanations)
