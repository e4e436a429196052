"""graphopt debug: planted faults located by bisection, Q/DQ-aware matching, lossless pairs,
chunked sweeps, Q/DQ pairs disabled in turn, backends, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from graphopt import zoo
from graphopt.backends.registry import check_available, parse_backend
from graphopt.calibration import RandomData
from graphopt.feeds import random_inputs
from graphopt.harness.debug import DebugConfig, debug_models
from graphopt.harness.debug_faults import FAULT_KINDS, fault_sites, plant_fault
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline


def _located(name: str, kind: str, **config):
    reference, candidate = zoo.load(name), zoo.load(name)
    label = plant_fault(candidate, kind)
    report = debug_models(reference, candidate, [random_inputs(reference, seed=3)],
                          config=DebugConfig(**config))
    return label, report


def _assert_located(label, report):
    bisection = report.bisection
    assert bisection is not None and bisection.culprit == (label,), bisection
    # one run of both models (outputs), then one run of a joint graph per bisection step
    assert bisection.reference_runs == 0
    runs = 1 + bisection.candidate_runs
    assert runs <= math.log2(report.candidate_nodes) + 2, (runs, report.candidate_nodes)
    assert report.first_divergence is not None
    assert report.first_divergence.match.node == label


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("name", ["tiny_cnn", "digits"])
def test_planted_fault_located_exactly_in_log2_runs(name, kind):
    label, report = _located(name, kind, sweep=True)
    assert report.verdict == "diverges"
    _assert_located(label, report)


def test_planted_fault_in_zoo_resnet50_without_the_sweep():
    label, report = _located("resnet50", "swap", sweep=False)
    _assert_located_bisection_only(label, report)
    assert report.rows == [] and report.max_exposed_bytes == 0


def _assert_located_bisection_only(label, report):
    bisection = report.bisection
    assert bisection is not None and bisection.culprit == (label,), bisection
    total = report.reference_runs + report.candidate_runs  # every run of the debug session
    assert total == 1 + bisection.candidate_runs <= math.log2(report.candidate_nodes) + 2


def test_every_site_of_a_small_model_is_located():
    reference = zoo.load("tiny_cnn")
    feed = random_inputs(reference, seed=1)
    for site in fault_sites(reference, "scale"):
        candidate = zoo.load("tiny_cnn")
        plant_fault(candidate, "scale", site)
        report = debug_models(reference, candidate, [feed], config=DebugConfig(sweep=False))
        assert report.bisection is not None and report.bisection.culprit == (site,)


def test_lossless_rewrite_has_no_divergence_and_matches_through_fusion():
    reference, candidate = zoo.load("tiny_cnn"), zoo.load("tiny_cnn")
    Pipeline.from_spec("cleanup,fuse").run(candidate)
    assert len(list(candidate.graph)) < len(list(reference.graph))
    report = debug_models(reference, candidate, [random_inputs(reference, seed=0)])
    assert report.verdict == "no divergence" and report.bisection is None
    worst = report.worst
    assert worst is not None and worst.fidelity.sqnr_db > 80
    # the fused Conv's output (it kept the Conv's name) is compared with the BN's output
    by_reference = {row.match.reference: row.match.candidate for row in report.rows}
    bn = next(n for n in reference.graph if n.op_type == "BatchNormalization")
    conv = next(n for n in reference.graph if n.op_type == "Conv")
    assert by_reference[bn.outputs[0].name] == conv.outputs[0].name
    assert conv.outputs[0].name not in by_reference
    data = report.to_dict()
    assert data["verdict"] == "no divergence" and data["worst"]["fidelity"]["sqnr_db"] > 80
    json.dumps(data)


def test_chunks_bound_the_exposed_tensors_and_change_nothing():
    reference, candidate = zoo.load("digits"), zoo.load("digits")
    plant_fault(candidate, "bias")
    feeds = [random_inputs(reference, seed=0)]
    whole = debug_models(reference, candidate, feeds, config=DebugConfig(bisect=False))
    small = debug_models(reference, candidate, feeds,
                         config=DebugConfig(bisect=False, chunk_bytes=20_000))
    largest = max(math.prod(row_shape) for row_shape in _shapes(reference, feeds[0])) * 4
    assert small.max_exposed_bytes <= 2 * max(20_000, largest)
    assert small.max_exposed_bytes < whole.max_exposed_bytes
    assert small.candidate_runs > whole.candidate_runs
    assert [r.to_dict() for r in small.rows] == [r.to_dict() for r in whole.rows]


def _shapes(model: ir.Model, feed) -> list[tuple[int, ...]]:
    from graphopt.observe import ActivationTap

    names = [v.name for node in model.graph for v in node.outputs]
    with ActivationTap(model, names) as tap:
        return [a.shape for a in tap.run(feed).values()]


_SOFTMAX_NET = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 16] x) => (float[4, 10] y) {
        h = MatMul (x, w1)
        r = Relu (h)
        z = MatMul (r, w2)
        y = Softmax <axis = 1> (z)
    }
"""


def _softmax_pair() -> tuple[ir.Model, ir.Model]:
    """A float net and its QDQ copy: a fine pair on the hidden activation, a coarse one
    (1/16 steps) on the Softmax output, as quantizers that quantize graph outputs write."""
    rng = np.random.default_rng(0)
    reference = onnx.parser.parse_model(_SOFTMAX_NET)
    weights = [onnx.numpy_helper.from_array(rng.normal(0, s, shape).astype(np.float32), name)
               for name, s, shape in (("w1", 0.5, (16, 32)), ("w2", 0.3, (32, 10)))]
    reference.graph.initializer.extend(weights)
    for index, node in enumerate(reference.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    candidate = onnx.ModelProto()
    candidate.CopyFrom(reference)
    nodes = list(candidate.graph.node)
    helper = onnx.helper
    scales = [helper.make_tensor(n, onnx.TensorProto.FLOAT, [], [v])
              for n, v in (("r_scale", 0.02), ("y_scale", 1 / 16))]
    zero = helper.make_tensor("zp", onnx.TensorProto.UINT8, [], [0])
    candidate.graph.initializer.extend([*scales, zero])
    nodes[1].output[0] = "r"
    nodes[2].input[0] = "r_DequantizeLinear_Output"
    nodes[3].output[0] = "y_QuantizeLinear_Input"
    qdq = [
        helper.make_node("QuantizeLinear", ["r", "r_scale", "zp"], ["r_q"],
                         name="r_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["r_q", "r_scale", "zp"],
                         ["r_DequantizeLinear_Output"], name="r_DequantizeLinear"),
        helper.make_node("QuantizeLinear", ["y_QuantizeLinear_Input", "y_scale", "zp"], ["y_q"],
                         name="y_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "zp"], ["y"],
                         name="y_DequantizeLinear"),
    ]
    del candidate.graph.node[:]
    candidate.graph.node.extend([*nodes[:2], *qdq[:2], nodes[2], nodes[3], *qdq[2:]])
    onnx.checker.check_model(candidate)
    return ir.from_proto(reference), ir.from_proto(candidate)


def test_softmax_qdq_named_as_the_dominant_error():
    reference, candidate = _softmax_pair()
    feeds = [random_inputs(reference, seed=s) for s in range(2)]
    report = debug_models(reference, candidate, feeds)
    assert report.pairs_total == 2 and report.verdict == "diverges"
    by_reference = {row.match.reference: row for row in report.rows}
    assert by_reference["r"].match.candidate == "r_DequantizeLinear_Output"
    assert by_reference["r"].match.before_qdq == "r"
    assert by_reference["y"].match.before_qdq == "y_QuantizeLinear_Input"
    assert by_reference["r"].qdq_sqnr_db > 30 > by_reference["y"].fidelity.sqnr_db
    top = report.contributions[0]
    assert top.pair == "y_QuantizeLinear" and top.share > 0.9
    assert report.keep == ["softmax_3"]
    assert report.bisection.culprit == ("y_QuantizeLinear", "y_DequantizeLinear")


def test_graphopt_quantize_keep_suggestion_names_layers_of_the_reference():
    reference, candidate = zoo.load("tiny_cnn"), zoo.load("tiny_cnn")
    Pipeline.from_spec("quantize(mixed=false,latency_aware=false)").run(
        candidate, context=PassContext(calibration=RandomData(candidate, batches=4, seed=1)))
    report = debug_models(reference, candidate, [random_inputs(reference, seed=0)],
                          config=DebugConfig(threshold_db=60))
    assert report.pairs_total > 0 and report.contributions
    layer_names = {n.name for n in reference.graph if n.op_type in ("Conv", "Gemm")}
    assert report.keep and set(report.keep) <= layer_names
    shares = [c.share for c in report.contributions]
    assert shares == sorted(shares, reverse=True)


def test_same_model_on_another_backend():
    model = zoo.load("tiny_cnn")
    report = debug_models(model, model, [random_inputs(model, seed=0)],
                          candidate_backend=parse_backend("ort-cpu"))
    assert report.candidate_backend == "ort-cpu"
    assert report.verdict == "no divergence", report.worst.to_dict()


@pytest.mark.skipif(not check_available("openvino-cpu")[0], reason="openvino is not installed")
def test_openvino_backend_planted_fault_located():
    reference, candidate = zoo.load("tiny_cnn"), zoo.load("tiny_cnn")
    label = plant_fault(candidate, "swap")
    report = debug_models(reference, candidate, [random_inputs(reference, seed=0)],
                          candidate_backend=parse_backend("openvino-cpu:fp32"),
                          config=DebugConfig(sweep=False))
    bisection = report.bisection
    assert bisection is not None and bisection.culprit == (label,)
    # two runtimes: each step runs the reference for the cut's tensors, then the candidate
    assert bisection.reference_runs == bisection.candidate_runs


def test_cli_json_and_table(tmp_path, run_cli):
    candidate = zoo.load("tiny_cnn")
    label = plant_fault(candidate, "scale")
    path = tmp_path / "fault.onnx"
    ir.save(candidate, path)
    code, stdout, err = run_cli("debug", "zoo:tiny_cnn", str(path), "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["bisection"]["culprit"] == [label]
    assert data["first_divergence"]["node"] == label
    assert data["runs"]["candidate"] >= 1 + data["bisection"]["candidate_runs"]
    code, stdout, err = run_cli("debug", "zoo:tiny_cnn", str(path), "--no-sweep")
    assert code == 0, err
    assert f"located: {label} (Conv)" in " ".join(stdout.split())


def test_cli_errors_are_one_line(run_cli, tmp_path):
    code, _, err = run_cli("debug", "zoo:tiny_cnn")
    assert code == 2 and "--backend" in err
    code, _, err = run_cli("debug", "zoo:tiny_cnn", "zoo:tiny_cnn", "--backend", "nope")
    assert code == 2 and "unknown backend" in err
    code, _, err = run_cli("debug", "zoo:tiny_cnn", "zoo:mlp")
    assert code == 2 and "input data" in err


def test_html_report_inlines_the_depth_plot_and_marks_the_located_nodes(tmp_path):
    pytest.importorskip("matplotlib")
    from graphopt.harness.debug_report import REPORT_FILE, located_positions, write_debug_report

    reference, candidate = _softmax_pair()
    report = debug_models(reference, candidate, [random_inputs(reference, seed=s)
                                                 for s in range(2)])
    page = write_debug_report(report, tmp_path / "out")
    assert page == tmp_path / "out" / REPORT_FILE
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 1
    # self-contained: nothing loaded from elsewhere
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "<link" not in text and "url(" not in text
    assert "y_QuantizeLinear" in text and "softmax_3" in text
    by_reference = {row.match.reference: row for row in report.rows}
    # the located Q/DQ pair quantizes "y", the Softmax's output
    assert located_positions(report) == [by_reference["y"].match.position]


def test_cli_report_writes_the_page(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    candidate = zoo.load("tiny_cnn")
    label = plant_fault(candidate, "bias")
    path = tmp_path / "fault.onnx"
    ir.save(candidate, path)
    code, stdout, err = run_cli("debug", "zoo:tiny_cnn", str(path), "--report",
                                str(tmp_path / "report"))
    assert code == 0, err
    page = tmp_path / "report" / "debug.html"
    assert "debug.html" in stdout
    text = page.read_text()
    assert "data:image/png;base64," in text and label in text


def test_chunks_count_every_feed_of_a_fixed_batch_model():
    """A model whose batch is fixed at 1, fed several samples: the sweep holds every feed's
    copy of a chunk, so the chunk's budget covers all of them."""
    reference, candidate = zoo.load("mbv2_block"), zoo.load("mbv2_block")
    plant_fault(candidate, "bias")
    assert reference.graph.inputs[0].shape[0] == 1
    feeds = [random_inputs(reference, seed=s) for s in range(6)]
    largest = max(math.prod(shape) for shape in _shapes(reference, feeds[0])) * 4
    chunk = 3 * largest  # three tensors of one run, half a tensor of all six
    report = debug_models(reference, candidate, feeds,
                          config=DebugConfig(bisect=False, chunk_bytes=chunk))
    # per side: one chunk, or one tensor of every feed when that alone is larger
    assert report.max_exposed_bytes <= 2 * max(chunk, len(feeds) * largest)
