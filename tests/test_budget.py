"""Fidelity budgets: parsing, judging, the per-precision tolerances shared with bench."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphopt.budget import Budget, lossless_budget, precision_budget
from graphopt.errors import GraphoptError
from graphopt.verify import compare_outputs


def _fidelity(noise: float, classes: int = 10):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, classes)).astype(np.float32)
    return compare_outputs({"y": ref}, {"y": ref + noise * rng.standard_normal(ref.shape)})


def test_parse_round_trips():
    budget = Budget.parse("sqnr>=30, accuracy_drop<=0.5,cosine>=0.999")
    assert str(budget) == "sqnr>=30,accuracy_drop<=0.5,cosine>=0.999"
    assert budget.term("sqnr").limit == 30
    assert not Budget.parse("") and not Budget.parse(None)


@pytest.mark.parametrize("text, message", [
    ("sqnr>30", "is not METRIC>=VALUE"),
    ("snr>=30", "unknown metric 'snr'"),
    ("sqnr<=30", "sqnr takes >="),
    ("accuracy_drop>=1", "accuracy_drop takes <="),
    ("sqnr>=high", "'high' is not a number"),
])
def test_bad_terms_are_one_line(text, message):
    with pytest.raises(GraphoptError, match=message) as info:
        Budget.parse(text)
    assert "\n" not in str(info.value)


def test_judge_names_the_broken_term():
    fidelity = _fidelity(0.01)  # ~40 dB
    assert 35 < fidelity.sqnr_db < 45
    judged = Budget.parse("sqnr>=30,cosine>=0.99").judge(fidelity)
    assert judged.ok and not judged.failures
    judged = Budget.parse("sqnr>=200").judge(fidelity)
    assert not judged.ok
    assert judged.failures[0].startswith("sqnr ") and "breaks sqnr>=200" in judged.failures[0]


def test_accuracy_and_top1_terms():
    fidelity = _fidelity(0.0)
    assert math.isinf(fidelity.sqnr_db)
    judged = Budget.parse("accuracy_drop<=0.5,top1>=1").judge(fidelity, accuracy_drop=0.7)
    assert judged.failures == ("accuracy_drop 0.70 points breaks accuracy_drop<=0.5",)
    unchecked = Budget.parse("accuracy_drop<=0.5").judge(fidelity)
    assert unchecked.ok and "accuracy_drop<=0.5" in unchecked.unchecked[0]


def test_nan_never_passes():
    judged = Budget.parse("max_rel<=1").judge(compare_outputs(
        {"y": np.ones((1, 3), np.float32)}, {"y": np.full((1, 3), np.nan, np.float32)}))
    assert not judged.ok


def test_precision_budgets():
    assert str(precision_budget("fp32")) == "max_rel<=0.0001"
    assert str(precision_budget("fp16")) == "max_rel<=0.01,cosine>=0.99"
    assert str(precision_budget("unknown")) == str(precision_budget("fp32"))
    assert str(lossless_budget("fp16")) == "max_rel<=0.01"
    assert str(lossless_budget("int8")) == "max_rel<=0.0001"
