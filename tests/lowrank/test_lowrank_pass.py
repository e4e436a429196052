"""The lowrank pass: rank selection on graphs, only-where-it-pays by cost model and by a latency
probe, per-layer decisions, options from a spec, and a zoo:digits pipeline under a budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lowrank_testing import build, check, conv_model, op_types, relative_error, run

from graphopt.calibration import open_data
from graphopt.evaluate import Evaluator
from graphopt.latency import LatencyComparison, LatencyEstimate, verdict_of
from graphopt.model_io import resolve_model
from graphopt.pass_api import get_pass_class
from graphopt.pass_context import PassContext
from graphopt.passes.lowrank import LowRankPass, factorize
from graphopt.passes.lowrank.rewrite import conv_site
from graphopt.pipeline import Pipeline
from graphopt.spec import build_passes


def _decaying_weight(n, c, kernel, seed=0, decay=4.0):
    """A conv weight whose channel-SVD spectrum decays (rank matters, unlike white noise)."""
    rng = np.random.default_rng(seed)
    k = c * math.prod(kernel)
    u = np.linalg.qr(rng.normal(size=(n, n)))[0]
    v = np.linalg.qr(rng.normal(size=(k, n)))[0]
    s = np.exp(-np.arange(n) / decay)
    return ((u * s) @ v.T).reshape(n, c, *kernel)


def _net(seed=0):
    weight = _decaying_weight(32, 16, (3, 3), seed=seed)
    return conv_model(16, 32, (3, 3), pads=[1, 1, 1, 1], weight=weight, size=(12, 12),
                      seed=seed)


@pytest.mark.parametrize("method", ["spatial_svd", "channel_svd", "tucker2"])
def test_energy_selection_keeps_the_energy_with_ranks_rounded_to_eight(method):
    model = _net()
    feed = {"x": np.random.default_rng(1).normal(size=(2, 16, 12, 12)).astype(np.float32)}
    reference = run(model, feed)
    lowrank = LowRankPass(method=method, energy=0.95, only_if_faster=False)
    lowrank(model)
    (decision,) = lowrank.decisions
    assert decision.split
    assert all(r % 8 == 0 for r in decision.ranks)
    assert decision.weight_error <= math.sqrt(0.05) + 1e-9
    assert decision.macs_after < decision.macs_before
    # The output error follows the weight error (a full-rank split would be exact).
    assert 1e-4 < relative_error(reference, run(model, feed)) < 0.5
    assert any("rank" in line and "split" in line for line in lowrank.explanations)
    check(model)


@pytest.mark.parametrize("method", ["spatial_svd", "channel_svd", "tucker2"])
def test_mac_target_is_met(method):
    model = _net()
    lowrank = LowRankPass(method=method, select="macs", target_macs=0.4, only_if_faster=False)
    lowrank(model)
    (decision,) = lowrank.decisions
    assert decision.split and decision.macs_after <= 0.4 * decision.macs_before
    assert all(r % 8 == 0 for r in decision.ranks)


def test_auto_picks_the_cheapest_method_at_the_energy():
    model = _net()
    site = conv_site(next(iter(model.graph)))
    lowrank = LowRankPass(energy=0.9, only_if_faster=False)
    lowrank(model)
    (decision,) = lowrank.decisions
    macs = {}
    for method in ("spatial_svd", "channel_svd", "tucker2"):
        other = _net()
        trial = LowRankPass(method=method, energy=0.9, only_if_faster=False)
        trial(other)
        macs[method] = trial.decisions[0].macs_after
    assert decision.method == min(macs, key=macs.get)
    assert decision.macs_before == site.macs


def test_vbmf_keeps_noise_layers_and_splits_structured_ones():
    noisy = conv_model(16, 32, (3, 3), size=(8, 8))
    lowrank = LowRankPass(method="channel_svd", select="vbmf", only_if_faster=False)
    assert not lowrank(noisy).modified
    assert "noise" in lowrank.decisions[0].reason
    rng = np.random.default_rng(2)
    structured = (rng.normal(size=(32, 6)) @ rng.normal(size=(6, 144))
                  + 0.05 * rng.normal(size=(32, 144))).reshape(32, 16, 3, 3)
    model = conv_model(16, 32, (3, 3), size=(8, 8), weight=structured)
    lowrank = LowRankPass(method="channel_svd", select="vbmf", only_if_faster=False)
    lowrank(model)
    assert lowrank.decisions[0].ranks == (8,)  # VBMF finds 6, rounded up to 8


def test_cost_model_keeps_layers_that_do_not_pay():
    model = _net()
    lowrank = LowRankPass(method="channel_svd", energy=0.9999)  # rank 24 of 32: 0.92x MACs
    assert not lowrank(model).modified
    assert op_types(model) == ["Conv"]
    assert "cost model says it does not pay" in lowrank.decisions[0].reason
    lowrank = LowRankPass(method="channel_svd", energy=0.8)
    assert lowrank(model).modified
    assert lowrank.decisions[0].reason == "the cost model says it pays"
    assert lowrank.stats["layers_split"] == 1 and lowrank.stats["split_channel_svd"] == 1


class _FakeProbe:
    """A latency probe whose verdicts are scripted: per-layer speedups, then the whole model."""

    target = "fake-cpu"

    def __init__(self, speedups):
        self.speedups = list(speedups)
        self.compared = []

    def measure(self, model):
        raise AssertionError("lowrank compares, it does not measure")

    def compare(self, baseline, candidate):
        self.compared.append((baseline, candidate))
        speedup = self.speedups.pop(0)
        estimate = LatencyEstimate(self.target, 1.0, 0.9, 1.1, 50, "scripted")
        after = LatencyEstimate(self.target, 1.0 / speedup, 0.9, 1.1, 50, "scripted")
        low, high = speedup * 0.98, speedup * 1.02
        assert verdict_of(low, high)
        return LatencyComparison(self.target, speedup, low, high, 0.95, estimate, after,
                                 "scripted", "scripted")


_TWO_CONVS = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 16, 12, 12] x) => (float[1, 32, 12, 12] y) {
        h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
        r = Relu (h)
        y = Conv <pads = [1, 1, 1, 1]> (r, w2, b2)
    }
"""


def _two_convs():
    rng = np.random.default_rng(4)
    return build(_TWO_CONVS, w1=_decaying_weight(16, 16, (3, 3), 1).astype(np.float32),
                 b1=rng.normal(size=16).astype(np.float32),
                 w2=_decaying_weight(32, 16, (3, 3), 2).astype(np.float32),
                 b2=rng.normal(size=32).astype(np.float32))


def test_probe_decides_per_layer_and_on_the_whole_model():
    model = _two_convs()
    probe = _FakeProbe([0.8, 1.5, 1.3])  # layer 1 slower, layer 2 faster, model faster
    lowrank = LowRankPass(method="channel_svd", energy=0.9).with_context(
        PassContext(latency=probe))
    assert lowrank(model).modified
    assert op_types(model) == ["Conv", "Relu", "Conv", "Conv"]
    first, second = lowrank.decisions
    assert not first.split and "not faster on fake-cpu" in first.reason
    assert second.split and second.measured_ms_after == pytest.approx(1 / 1.5)
    assert len(probe.compared) == 3
    layer, factors = probe.compared[1]
    assert op_types(layer) == ["Conv"] and op_types(factors) == ["Conv", "Conv"]
    assert any("measured 1 ms -> 0.667 ms" in line for line in lowrank.explanations)


def test_probe_whole_model_not_faster_keeps_the_model():
    model = _two_convs()
    probe = _FakeProbe([1.5, 1.5, 1.0])
    lowrank = LowRankPass(method="channel_svd", energy=0.9).with_context(
        PassContext(latency=probe))
    assert not lowrank(model).modified
    assert op_types(model) == ["Conv", "Relu", "Conv"]
    assert not any(d.split for d in lowrank.decisions)
    assert any("not faster on fake-cpu" in line and "every layer is kept" in line
               for line in lowrank.explanations)


def test_options_from_a_spec_and_needs():
    (lowrank,) = build_passes("lowrank(method=tucker2,select=macs,target_macs=0.4,round_to=4,"
                              "repair=true,hooi=2,only_if_faster=false,keep=a;b)")
    assert isinstance(lowrank, LowRankPass)
    assert (lowrank.method, lowrank.select, lowrank.target_macs, lowrank.round_to) == (
        "tucker2", "macs", 0.4, 4)
    assert lowrank.repair and lowrank.hooi == 2 and lowrank.keep == ("a", "b")
    assert lowrank.needs == frozenset({"calibration"})
    assert LowRankPass().needs == frozenset()
    assert get_pass_class("lowrank").needs == frozenset({"calibration"})
    assert not get_pass_class("lowrank").lossless
    with pytest.raises(ValueError, match="energy"):
        LowRankPass(energy=1.5)


def test_gram_svd_is_exact_at_full_rank():
    for shape in ((30, 50), (50, 30)):
        matrix = np.random.default_rng(8).normal(size=shape)
        u, s, vt = factorize.svd(matrix)
        np.testing.assert_allclose((u * s) @ vt, matrix, atol=1e-9)
        np.testing.assert_allclose(s, np.linalg.svd(matrix, compute_uv=False), rtol=1e-9)
        np.testing.assert_allclose(u.T @ u, np.eye(30), atol=1e-9)


def test_digits_pipeline_under_a_budget():
    model = resolve_model("zoo:digits")
    context = PassContext(calibration=open_data("zoo:digits", model),
                          evaluator=Evaluator(open_data("zoo:digits:test", model)))
    report = Pipeline(build_passes("lossless,lowrank(select=macs,target_macs=0.7)")).run(
        model, context=context, budget="accuracy_drop<=40")
    record = report.passes[-1]
    assert record.modified and record.stats["layers_split"] >= 2
    assert record.after.macs < 0.8 * record.before.macs
    assert record.accuracy is not None and record.accuracy >= report.accuracy_before - 40
    assert len(record.explanations) == 11  # one line per Conv/Gemm of the model


def test_layer_models_run_and_agree_at_full_rank():
    from graphopt.passes.lowrank.plan import Selection, plan_layer
    from graphopt.passes.lowrank.rewrite import layer_model, matrix_site

    rng = np.random.default_rng(11)
    conv = conv_model(6, 8, (3, 3), strides=[2, 1], pads=[1, 1, 1, 1], group=2)
    gemm = build("""
        <ir_version: 8, opset_import: ["" : 9]>
        g (float[3, 12] x) => (float[3, 7] y) { y = Gemm <transB = 1> (x, w, c) }""",
                 w=rng.normal(size=(7, 12)).astype(np.float32),
                 c=rng.normal(size=7).astype(np.float32))
    for model, site_of in ((conv, conv_site), (gemm, matrix_site)):
        site = site_of(next(iter(model.graph)))
        split = plan_layer(site, "channel_svd", Selection(energy=1.0, round_to=1))
        opset = model.opset_imports[""]
        alone, factors = layer_model(site, None, opset), layer_model(site, split, opset)
        shape = [d if isinstance(d, int) else 1 for d in site.node.inputs[0].shape]
        feed = {"x": rng.normal(size=shape).astype(np.float32)}
        assert relative_error(run(alone, feed), run(factors, feed)) < 1e-4
        check(alone)
        check(factors)
