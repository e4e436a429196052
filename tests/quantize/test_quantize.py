"""quantize: QDQ structure, ReLU absorption, int32 biases, calibrators, opsets, ORT fusion."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import onnxruntime as ort
import pytest

from graphopt import oracle
from graphopt.calibration import RandomData
from graphopt.model_io import resolve_model
from graphopt.observe import Histogram
from graphopt.pass_context import PassContext
from graphopt.passes.quantize.calibrators import CALIBRATORS, calibrate_threshold
from graphopt.passes.quantize.qparams import (
    INT8,
    UINT8,
    activation_params,
    fake_quantize,
    quantize_bias,
    quantize_weight,
)
from graphopt.passes.quantize.quantize_pass import QuantizePass
from graphopt.pipeline import Pipeline
from graphopt.verify import compare_outputs

_NET = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 8, 8] x) => (float[2, 5] y) {
        h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
        r = Relu (h)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
        c = Conv (p, w2, b2)
        f = Flatten (c)
        y = Gemm <transB = 1> (f, w3, b3)
    }
"""


def _net(seed: int = 0) -> ir.Model:
    rng = np.random.default_rng(seed)
    model = ir.from_proto(onnx.parser.parse_model(_NET))
    weights = {
        "w1": rng.normal(0, 0.3, (4, 3, 3, 3)), "b1": rng.normal(0, 0.1, 4),
        "w2": rng.normal(0, 0.3, (6, 4, 1, 1)), "b2": rng.normal(0, 0.1, 6),
        "w3": rng.normal(0, 0.1, (5, 96)), "b3": rng.normal(0, 0.1, 5),
    }
    for name, array in weights.items():
        value = ir.Value(name=name, const_value=ir.tensor(array.astype(np.float32)))
        value.shape, value.dtype = ir.Shape(array.shape), ir.DataType.FLOAT
        model.graph.register_initializer(value)
        for node in model.graph:
            for index, inp in enumerate(node.inputs):
                if inp is not None and inp.name == name and inp is not value:
                    node.replace_input_with(index, value)
    common_passes.ShapeInferencePass()(model)
    return model


def _quantize(model: ir.Model, **options) -> QuantizePass:
    graph_pass = QuantizePass(**options)
    graph_pass.with_context(PassContext(calibration=RandomData(model, batches=8, seed=1)))
    graph_pass(model)
    return graph_pass


def _ops(model: ir.Model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph)


def test_structure_and_fidelity():
    original = _net()
    model = _net()
    feed = next(iter(RandomData(model, batches=1, seed=50)))
    reference = oracle.run_model(oracle.make_session(original), feed)
    graph_pass = _quantize(model)
    ops = _ops(model)
    assert ops["Relu"] == 0 and graph_pass.stats["relus_absorbed"] == 1
    assert graph_pass.stats["layers_quantized"] == 3 and graph_pass.stats["biases_int32"] == 3
    # x; the ReLU output and MaxPool's output (one shared range); the second conv's output
    # and the Flatten of it (shared); the Gemm's output is the graph output and stays float.
    assert ops["QuantizeLinear"] == 5 and graph_pass.stats["tensors_quantized"] == 5
    assert ops["DequantizeLinear"] == 5 + 3 + 3  # activations, weights, biases
    weights = [n for n in model.graph if n.op_type == "DequantizeLinear"
               and n.inputs[0].const_value is not None
               and n.inputs[0].const_value.dtype == ir.DataType.INT8]
    assert len(weights) == 3
    axes = sorted(n.attributes.get_int("axis", 1) for n in weights)
    assert axes == [0, 0, 0]  # conv out channels, Gemm transB=1 rows
    biases = [n for n in model.graph if n.op_type == "DequantizeLinear"
              and n.inputs[0].const_value is not None
              and n.inputs[0].const_value.dtype == ir.DataType.INT32]
    assert len(biases) == 3
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    fidelity = compare_outputs(reference, oracle.run_model(oracle.make_session(model), feed))
    assert fidelity.sqnr_db > 30, fidelity.summary()


def test_maxpool_shares_the_relu_output_parameters():
    model = _net()
    _quantize(model)
    quantizers = {n.name: n for n in model.graph if n.op_type == "QuantizeLinear"}
    for before, after in (("r", "p"), ("c", "f")):  # MaxPool and Flatten
        for index in (1, 2):
            a = quantizers[f"{before}_QuantizeLinear"].inputs[index].const_value.numpy()
            b = quantizers[f"{after}_QuantizeLinear"].inputs[index].const_value.numpy()
            assert a == b
    assert (quantizers["x_QuantizeLinear"].inputs[1].const_value.numpy()
            != quantizers["r_QuantizeLinear"].inputs[1].const_value.numpy())


def test_absorbed_relu_is_exact_and_symmetric_keeps_it():
    model = _net()
    _quantize(model, activations="uint8")
    zero_points = [n.inputs[2].const_value.numpy() for n in model.graph
                   if n.op_type == "QuantizeLinear" and n.inputs[0].producer() is not None
                   and n.inputs[0].producer().op_type == "Conv"
                   and n.inputs[0].producer().inputs[0].name == "x_dequantized"]
    assert zero_points == [np.uint8(0)]  # the range starts at 0: the clamp is the ReLU
    symmetric = _net()
    graph_pass = _quantize(symmetric, activations="int8", symmetric=True)
    assert _ops(symmetric)["Relu"] == 1 and graph_pass.stats["relus_absorbed"] == 0


def test_keep_and_declines_are_explained():
    model = _net()
    graph_pass = _quantize(model, keep=("Gemm",))
    assert graph_pass.stats["layers_quantized"] == 2
    assert any("kept float" in line for line in graph_pass.explanations)


def test_zero_tensor_stays_float_with_the_reason():
    model = _net()
    first = next(n for n in model.graph if n.op_type == "Conv")
    first.inputs[1].const_value = ir.tensor(np.zeros((4, 3, 3, 3), np.float32))
    first.inputs[2].const_value = ir.tensor(np.zeros(4, np.float32))
    graph_pass = _quantize(model)
    assert any("is zero on all calibration data" in line for line in graph_pass.explanations)
    onnx.checker.check_model(ir.to_proto(model), full_check=True)


def test_opset9_zoo_model_needs_no_manual_step_and_fuses_in_ort(tmp_path):
    model = resolve_model("zoo:squeezenet")
    assert model.opset_imports[""] == 9
    report = Pipeline.from_spec("quantize").run(
        model, context=PassContext(calibration=RandomData(model, batches=4, seed=1)))
    assert model.opset_imports[""] == 17 and report.passes[0].stats["layers_quantized"] == 26
    assert report.fidelity.sqnr_db > 15, report.fidelity.summary()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(ir.to_proto(model).SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    fused = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath)
                                .graph.node)
    assert fused["QLinearConv"] == 26, fused


def test_qparams():
    params = activation_params(0.5, 4.0, UINT8)  # widened to contain 0
    assert params.low == 0 and params.zero_point == 0
    assert params.scale == pytest.approx(4.0 / 255)
    signed = activation_params(-1.0, 3.0, UINT8)
    assert 0 < signed.zero_point < 255
    assert fake_quantize(np.array([0.0], np.float32), signed)[0] == 0.0  # 0 is exact
    symmetric = activation_params(-1.0, 3.0, INT8, symmetric=True)
    assert symmetric.zero_point == 0 and symmetric.scale == pytest.approx(3.0 / 127.5)
    q, scales = quantize_weight(np.array([[1.0, -0.5], [0.02, 0.01]]), axis=0)
    assert q.dtype == np.int8 and q.tolist()[0] == [127, -64]
    assert q[1, 0] == 127 and q[1, 1] in (63, 64)  # 63.5: float32 scale rounding decides
    np.testing.assert_allclose(scales, [1 / 127, 0.02 / 127], rtol=1e-6)
    bias, bias_scales = quantize_bias(np.array([0.1, -0.2]), 0.05, scales)
    assert bias.dtype == np.int32
    np.testing.assert_allclose(bias * bias_scales, [0.1, -0.2], rtol=1e-3)


def test_calibrators_on_a_heavy_tail():
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=200_000), rng.normal(size=20) * 30])
    histogram = Histogram(2048, absolute=True)
    histogram.update(data)
    thresholds = {m: calibrate_threshold(m, histogram, steps=127.5) for m in CALIBRATORS}
    assert thresholds["minmax"] == pytest.approx(np.abs(data).max())
    for method in ("percentile", "entropy", "mse"):
        assert 2.0 < thresholds[method] < thresholds["minmax"], thresholds


def test_bias_correction_removes_the_mean_shift_of_weight_error():
    from graphopt.passes.quantize.bias_correction import output_shift

    rng = np.random.default_rng(3)
    model = _net()
    conv = next(n for n in model.graph if n.op_type == "Conv")
    mean = rng.uniform(0.5, 2.0, 3)  # post-ReLU-like positive input means
    shift = output_shift(conv, 0, mean)
    weight = conv.inputs[1].const_value.numpy().astype(np.float64)
    q, scales = quantize_weight(weight, 0)
    error = q * scales.astype(np.float64).reshape(-1, 1, 1, 1) - weight
    np.testing.assert_allclose(shift, error.sum(axis=(2, 3)) @ mean, rtol=1e-10)
    corrected, plain = _net(), _net()
    feed = next(iter(RandomData(corrected, batches=1, seed=50)))
    reference = oracle.run_model(oracle.make_session(_net()), feed)
    _quantize(corrected)
    _quantize(plain, bias_correction=False)
    gains = [compare_outputs(reference, oracle.run_model(oracle.make_session(m), feed)).sqnr_db
             for m in (corrected, plain)]
    assert gains[0] >= gains[1] - 0.5, gains  # never meaningfully worse on a tiny net


def test_bias_correction_on_squeezenet_gains_more_than_5_db():
    results = []
    for correct in (True, False):
        model = resolve_model("zoo:squeezenet")
        report = Pipeline.from_spec(f"cleanup,fuse,quantize(bias_correction={correct})").run(
            model, context=PassContext(calibration=RandomData(model, batches=8, seed=1)))
        results.append(report.fidelity.sqnr_db)
    assert results[0] > results[1] + 5, results


def _digits_int8(budget: str | None):
    from graphopt.calibration import open_data, split_holdout
    from graphopt.evaluate import Evaluator

    model = resolve_model("zoo:digits")
    calibration, held_out = split_holdout(open_data("zoo:digits", model))
    context = PassContext(calibration=calibration,
                          evaluator=Evaluator(open_data("zoo:digits:test", model)))
    return Pipeline.from_preset("int8").run(model, inputs=held_out, context=context,
                                            budget=budget)


def test_int8_digits_keeps_its_accuracy():
    report = _digits_int8(None)
    assert report.accuracy_before - report.accuracy_after <= 0.5
    stats = report.passes[-1].stats
    assert stats["layers_quantized"] == 11 and "mixed_precision_trials" not in stats


def test_mixed_precision_keeps_the_most_sensitive_layers_float_for_the_budget():
    full = _digits_int8(None).fidelity.sqnr_db
    target = round(full + 4)
    report = _digits_int8(f"sqnr>={target}")
    record = report.passes[-1]
    assert record.judgement.ok and report.fidelity.sqnr_db >= target
    kept = record.stats["layers_kept_float_for_budget"]
    assert 0 < kept < 11 and record.stats["layers_quantized"] == 11 - kept
    lines = [e for e in record.explanations if "kept float for the budget" in e]
    assert len(lines) == kept and all("quantized alone it leaves" in e for e in lines)


def _fake_comparison(speedup: float, low: float, high: float):
    from graphopt.latency import LatencyComparison, LatencyEstimate

    estimate = LatencyEstimate("fake-cpu", 1.0, 0.9, 1.1, 30, "fake")
    return LatencyComparison("fake-cpu", speedup, low, high, 0.95, estimate, estimate,
                             "ci_target", "fake")


class _FakeProbe:
    """A latency probe whose verdict depends on what the candidate quantized."""

    target = "fake-cpu"

    def __init__(self, faster_when) -> None:
        self.faster_when = faster_when
        self.calls = 0

    def measure(self, model):  # pragma: no cover - not used by the pass
        raise AssertionError("compare only")

    def compare(self, baseline, candidate):
        self.calls += 1
        faster = self.faster_when(candidate)
        low, high = (1.1, 1.3) if faster else (0.7, 0.9)
        return _fake_comparison((low + high) / 2, low, high)


def _grouped_conv_quantized(model) -> bool:
    for node in model.graph:
        if node.op_type == "Conv" and node.attributes.get_int("group", 1) > 1:
            producer = node.inputs[1].producer()
            if producer is not None and producer.op_type == "DequantizeLinear":
                return True
    return False


def _quantize_for(probe) -> tuple[ir.Model, QuantizePass]:
    """zoo mbv2_block quantized with ``probe`` as the latency target."""
    model = resolve_model("zoo:mbv2_block")
    graph_pass = QuantizePass()
    graph_pass.with_context(PassContext(calibration=RandomData(model, batches=4, seed=1),
                                        latency=probe))
    graph_pass(model)
    return model, graph_pass


def test_never_slower_than_float_on_the_target():
    model = resolve_model("zoo:mbv2_block")
    probe = _FakeProbe(lambda candidate: False)  # int8 is never faster here
    graph_pass = QuantizePass()
    graph_pass.with_context(PassContext(calibration=RandomData(model, batches=4, seed=1),
                                        latency=probe))
    before = _ops(model)
    result = graph_pass(model)
    # two placements (as quantized; without the Q/DQ on Conv outputs nothing quantized
    # reads), each with and without the grouped convolutions
    assert not result.modified and _ops(model) == before and probe.calls == 4
    assert any("every layer stays float" in e for e in graph_pass.explanations)


def test_grouped_convolutions_stay_float_when_that_is_what_pays():
    probe = _FakeProbe(lambda candidate: not _grouped_conv_quantized(candidate))
    model, graph_pass = _quantize_for(probe)
    # 2 placements x 2 rounds, then the two faster placements against each other
    assert probe.calls == 5 and not _grouped_conv_quantized(model)
    assert graph_pass.stats["layers_kept_float_for_latency"] >= 1
    assert graph_pass.stats["layers_quantized"] >= 1
    assert any("grouped convolutions float" in e and "faster" in e
               for e in graph_pass.explanations)


class _PickyProbe(_FakeProbe):
    """A target that cannot run int8 grouped convolutions at all."""

    def compare(self, baseline, candidate):
        from graphopt.latency import CandidateUnsupported

        if _grouped_conv_quantized(candidate):
            self.calls += 1
            raise CandidateUnsupported("fake-cpu cannot run candidate: no int8 grouped conv")
        return super().compare(baseline, candidate)


def test_a_variant_the_target_cannot_run_is_passed_over_with_the_reason():
    probe = _PickyProbe(lambda candidate: True)
    model, graph_pass = _quantize_for(probe)
    assert probe.calls == 5 and not _grouped_conv_quantized(model)
    assert graph_pass.stats["layers_quantized"] >= 1
    assert any("as quantized: does not run there (fake-cpu cannot run candidate" in e
               for e in graph_pass.explanations)


class _CostProbe(_FakeProbe):
    """Time = 10 for the float model, else 5 + ``per_pair`` x the activation Q/DQ pairs,
    known to +-2%."""

    def __init__(self, per_pair: float) -> None:
        super().__init__(lambda candidate: True)
        self.per_pair = per_pair

    def _time(self, model) -> float:
        pairs = sum(1 for n in model.graph if n.op_type == "QuantizeLinear"
                    and n.inputs[0].const_value is None)
        return 10.0 if pairs == 0 else 5.0 + self.per_pair * pairs

    def compare(self, baseline, candidate):
        self.calls += 1
        speedup = self._time(baseline) / self._time(candidate)
        return _fake_comparison(speedup, speedup * 0.98, speedup * 1.02)


def _conv_outputs_quantized(model) -> int:
    return sum(1 for n in model.graph if n.op_type == "QuantizeLinear"
               and n.inputs[0].producer() is not None
               and n.inputs[0].producer().op_type == "Conv")


@pytest.mark.parametrize("per_pair", [0.5, -0.5])
def test_the_target_chooses_whether_unread_conv_outputs_are_quantized(per_pair):
    model, graph_pass = _quantize_for(_CostProbe(per_pair))
    # both placements beat float; head to head the one with fewer pairs is kept unless
    # the other is detectably faster
    fewer = per_pair > 0
    assert graph_pass.stats.get("unread_conv_outputs_float", False) is fewer
    assert (_conv_outputs_quantized(model) == 0) is fewer
    assert graph_pass.stats["layers_quantized"] == 3
    kept = [e for e in graph_pass.explanations if "kept int8" in e]
    assert len(kept) == 1 and ("without Q/DQ on Conv outputs" in kept[0]) is fewer


def test_only_layers_read_the_quantized_copy_with_readers_layers():
    model = _net()
    graph_pass = _quantize(model, readers="layers")
    assert _ops(model)["Relu"] == 1 and graph_pass.stats["relus_absorbed"] == 0
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    pool = next(n for n in model.graph if n.op_type == "MaxPool")
    assert pool.inputs[0].producer().op_type == "Relu"  # not a layer: reads the float tensor


_GROUPED = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 8, 8] x) => (float[1, 4, 8, 8] y) {
        a = Conv <group = 2> (x, wg)
        r = Relu (a)
        d = Conv <group = 4, pads = [1, 1, 1, 1]> (r, wd)
        y = Conv (d, w1)
    }
"""


def _parsed(text: str, weights: dict[str, tuple[int, ...]], seed: int) -> onnx.ModelProto:
    """A parsed model with seeded normal(0, 0.5) weights of the given shapes."""
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(text)
    for name, shape in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(
            rng.normal(0, 0.5, shape).astype(np.float32), name))
    return proto


def _with_shapes(proto: onnx.ModelProto) -> ir.Model:
    model = ir.from_proto(proto)
    common_passes.ShapeInferencePass()(model)
    return model


def _grouped_net() -> ir.Model:
    return _with_shapes(_parsed(_GROUPED, {"wg": (4, 2, 1, 1), "wd": (4, 1, 3, 3),
                                           "w1": (4, 4, 1, 1)}, seed=3))


def _quantized_convs(model: ir.Model) -> list[int]:
    return [node.attributes.get_int("group", 1) for node in model.graph
            if node.op_type == "Conv" and node.inputs[1].producer() is not None
            and node.inputs[1].producer().op_type == "DequantizeLinear"]


def test_grouped_convolutions_that_are_not_depthwise_stay_float_by_default():
    model = _grouped_net()
    graph_pass = _quantize(model)
    assert sorted(_quantized_convs(model)) == [1, 4]  # the depthwise one is quantized
    assert any("group=2, not depthwise" in e for e in graph_pass.explanations)
    model = _grouped_net()
    _quantize(model, grouped=True)
    assert sorted(_quantized_convs(model)) == [1, 2, 4]


_FIRE = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 8, 8] x) => (float[1, 4, 4, 4] y) {
        a = Conv (x, wa)
        ra = Relu (a)
        b = Conv <pads = [1, 1, 1, 1]> (x, wb)
        rb = Relu (b)
        c = Concat <axis = 1> (ra, rb)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (c)
        y = Conv (p, wy)
    }
"""


def test_a_concat_feeding_a_maxpool_is_quantized_so_both_run_on_integers():
    proto = _parsed(_FIRE, {"wa": (4, 3, 1, 1), "wb": (4, 3, 3, 3), "wy": (4, 8, 1, 1)}, seed=4)
    model = _with_shapes(proto)
    original = ir.from_proto(proto)
    _quantize(model)
    nodes = {node.op_type: node for node in model.graph}
    # DQ -> Concat -> Q and DQ -> MaxPool -> Q, one scale for all of them
    for op in ("Concat", "MaxPool"):
        node = nodes[op]
        assert all(v.producer().op_type == "DequantizeLinear" for v in node.inputs), op
        assert [u.op_type for u, _ in node.outputs[0].uses()] == ["QuantizeLinear"], op
    scales = {float(q.inputs[1].const_value.numpy()) for q in model.graph
              if q.op_type == "QuantizeLinear" and q.inputs[0].name in ("ra", "rb", "c", "p")}
    assert len(scales) == 1
    feed = next(iter(RandomData(model, batches=1, seed=9)))
    fidelity = compare_outputs(oracle.run_model(oracle.make_session(original), feed),
                               oracle.run_model(oracle.make_session(model), feed))
    assert fidelity.sqnr_db > 25


_CLASSIFIER = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 16] x) => (float[1, 4] y, float[1, 4] z) {
        h = Gemm <transB = 1> (x, w1, b1)
        r = Relu (h)
        f = Reshape (r, shape)
        k = Gemm <transB = 1> (f, w2, b2)
        y = Softmax <axis = 1> (k)
        l = Gemm <transB = 1> (x, w3)
        z = Softmax <axis = 1> (l)
    }
"""


def test_a_gemm_output_is_quantized_only_where_a_quantized_tensor_reads_it(tmp_path):
    proto = _parsed(_CLASSIFIER, {"w1": (8, 16), "b1": (8,), "w2": (4, 8), "b2": (4,),
                                  "w3": (4, 16)}, seed=5)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 8]), "shape"))
    model = _with_shapes(proto)
    graph_pass = _quantize(model)
    assert graph_pass.stats["layers_quantized"] == 3
    quantized = {n.inputs[0].name for n in model.graph if n.op_type == "QuantizeLinear"
                 and n.inputs[0].const_value is None}
    # x and the second Gemm's input (through the Reshape, with the ReLU absorbed); the two
    # logits only a Softmax reads stay float.
    assert quantized == {"x", "h", "f"} and graph_pass.stats["relus_absorbed"] == 1
    # onnxruntime still runs all three in int8: QGemm with a float output for the logits.
    path = tmp_path / "q.onnx"
    onnx.save(ir.to_proto(model), path)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(tmp_path / "optimized.onnx")
    assert [n.op_type for n in optimized.graph.node].count("QGemm") == 3
