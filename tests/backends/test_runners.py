"""ORT and OpenVINO runners: lifecycle guards, metadata, outputs against the oracle, precision."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest

from graphopt import oracle, zoo
from graphopt.backends.base import (
    ModelLoader,
    RunnerStateError,
    canonical_precision,
    graph_precision,
)
from graphopt.backends.ort import OrtRunner
from graphopt.calibration import RandomData
from graphopt.model_io import resolve_model
from graphopt.pass_context import PassContext
from graphopt.passes.quantize.quantize_pass import QuantizePass
from graphopt.passes.quantize.weights_only import QuantizeWeightsPass
from graphopt.verify import compare_outputs, random_inputs


@pytest.fixture(scope="module")
def tiny():
    """zoo:tiny_cnn: its file, a feed of batch 2 and the oracle's outputs on it."""
    model = resolve_model("zoo:tiny_cnn")
    feed = random_inputs(model, seed=3, batch_size=2)
    reference = oracle.run_model(oracle.make_session(model), feed)
    return zoo.path("tiny_cnn"), feed, reference


def _openvino():
    """graphopt.backends.openvino imports openvino lazily, so importing it never skips: skip
    on openvino itself."""
    pytest.importorskip("openvino", reason="needs openvino")
    import graphopt.backends.openvino as ov

    return ov


def test_infer_before_activate_is_an_error(tiny):
    path, feed, _ = tiny
    runner = OrtRunner(path)
    with pytest.raises(RunnerStateError, match="before activate"):
        runner.infer(feed)
    with pytest.raises(RunnerStateError):
        runner.input_metadata()


def test_ort_lifecycle_and_outputs(tiny):
    path, feed, reference = tiny
    runner = OrtRunner(path, threads=1)
    runner.activate()
    with pytest.raises(RunnerStateError, match="already active"):
        runner.activate()
    assert runner.compile_seconds is not None and runner.compile_seconds > 0
    outputs = runner.infer(feed)
    assert compare_outputs(reference, outputs).max_rel <= 1e-5
    runner.deactivate()
    runner.deactivate()  # idempotent
    assert not runner.is_active
    with pytest.raises(RunnerStateError):
        runner.infer(feed)


def test_ort_metadata_settings_and_precision(tiny):
    path, feed, _ = tiny
    with OrtRunner(path, threads=2, optimization="basic") as runner:
        inputs, outputs = runner.input_metadata(), runner.output_metadata()
        assert list(inputs) == ["input"] and list(outputs) == ["logits"]
        assert inputs["input"].dtype == np.float32
        assert inputs["input"].shape[1:] == (3, 32, 32)
        assert outputs["logits"].shape[-1] == 10
        assert runner.precision == "fp32"
        assert runner.settings["providers"] == ["CPUExecutionProvider"]
        assert runner.settings["graph_optimization"] == "basic"
        assert runner.settings["intra_op_threads"] == 2
        with pytest.raises(ValueError, match="lacks inputs"):
            runner.infer({})
    assert not runner.is_active


def test_ort_io_binding_and_no_spinning_match_plain_run(tiny):
    path, feed, reference = tiny
    with OrtRunner(path, io_binding=True, spinning=False) as runner:
        assert runner.settings["thread_spinning"] is False
        assert compare_outputs(reference, runner.infer(feed)).max_rel <= 1e-5


def test_thread_pool_async_counts_completed_requests(tiny):
    path, feed, _ = tiny
    with OrtRunner(path, threads=1, async_workers=2) as runner:
        for _ in range(25):
            runner.submit(feed)
        assert runner.wait_all() == 25
        assert runner.wait_all() == 0


def test_ort_refuses_a_precision_it_cannot_set(tiny):
    with pytest.raises(ValueError, match="graph's own precision"):
        OrtRunner(tiny[0], precision="fp16")


def test_model_loader_is_lazy_and_checks_the_file(tmp_path, tiny):
    calls = []

    def source():
        calls.append(1)
        return tiny[0]

    loader = ModelLoader(source)
    assert not calls
    assert loader() == tiny[0] and loader() == tiny[0]
    assert len(calls) == 1
    with pytest.raises(FileNotFoundError):
        ModelLoader(tmp_path / "missing.onnx")()


def test_precision_names_and_graph_precision(tiny):
    assert canonical_precision("F32") == "fp32"
    assert canonical_precision("bfloat16") == "bf16"
    assert canonical_precision("f16") == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        canonical_precision("fp8")
    assert graph_precision(tiny[0]) == "fp32"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny):
    """zoo:tiny_cnn quantized by graphopt: {graph precision: file}."""
    folder = tmp_path_factory.mktemp("quantized")
    mixed = resolve_model("zoo:tiny_cnn")
    graph_pass = QuantizePass(keep=("Gemm",), mixed=False, latency_aware=False)
    graph_pass.with_context(PassContext(calibration=RandomData(mixed, batches=4, seed=1)))
    graph_pass(mixed)
    weights = resolve_model("zoo:tiny_cnn")
    QuantizeWeightsPass(min_elements=1)(weights)
    files = {}
    for name, model in (("mixed", mixed), ("int8-weights", weights)):
        files[name] = folder / f"{name}.onnx"
        ir.save(model, files[name])
    return files


def test_ort_reports_a_quantized_graphs_own_name(tiny, quantized):
    _, feed, reference = tiny
    for name, path in quantized.items():
        assert graph_precision(path) == name
        with OrtRunner(path, threads=1) as runner:
            assert runner.precision == name
            assert compare_outputs(reference, runner.infer(feed)).cosine > 0.98


def test_openvino_reports_a_quantized_graphs_own_name_whatever_the_hint(tiny, quantized):
    ov = _openvino()
    _, feed, reference = tiny
    for name, path in quantized.items():
        for precision in (None, "fp32"):
            with ov.OpenVinoRunner(path, precision=precision) as runner:
                assert runner.precision == name
                assert runner.settings["inference_precision_hint"] in ("fp32", "bf16", "fp16")
                assert compare_outputs(reference, runner.infer(feed)).cosine > 0.98


def test_openvino_reads_back_the_precision_it_ran(tiny):
    ov = _openvino()
    path, feed, reference = tiny
    with ov.OpenVinoRunner(path, precision="fp32") as runner:
        assert runner.precision == "fp32"
        assert runner.settings["inference_precision_hint"] == "fp32"
        assert compare_outputs(reference, runner.infer(feed)).max_rel <= 1e-4
    with ov.OpenVinoRunner(path) as runner:
        # Default: whatever OpenVINO chose, read back, never assumed to be fp32.
        assert runner.precision in ("fp32", "bf16", "fp16")
        assert runner.precision == runner.settings["inference_precision_hint"]
        fidelity = compare_outputs(reference, runner.infer(feed))
        assert fidelity.cosine > 0.99


def test_openvino_auto_reports_the_execution_device_precision(tiny):
    ov = _openvino()
    path, feed, reference = tiny
    with ov.OpenVinoRunner(path, device="AUTO", precision="fp32") as runner:
        assert runner.precision == "fp32"
        assert compare_outputs(reference, runner.infer(feed)).max_rel <= 1e-4
    with ov.OpenVinoRunner(path, device="AUTO") as runner:
        # AUTO does not forward INFERENCE_PRECISION_HINT: it is read from its device.
        assert runner.precision in ("fp32", "bf16", "fp16")
        if runner.precision != "fp32":
            assert compare_outputs(reference, runner.infer(feed)).max_rel > 1e-5


def test_openvino_lifecycle_metadata_and_async(tiny):
    ov = _openvino()
    path, feed, _ = tiny
    runner = ov.OpenVinoRunner(path, precision="fp32", hint="throughput", requests=3)
    with pytest.raises(RunnerStateError):
        runner.infer(feed)
    with runner:
        assert list(runner.input_metadata()) == ["input"]
        assert runner.output_metadata()["logits"].dtype == np.float32
        assert runner.settings["performance_hint"] == "throughput"
        assert runner.settings["async_requests"] == 3
        for _ in range(10):
            runner.submit(feed)
        assert runner.wait_all() == 10
    runner.deactivate()
    assert runner.compiled is None


def test_openvino_rejects_unknown_options(tiny):
    ov = _openvino()
    with pytest.raises(ValueError, match="device"):
        ov.OpenVinoRunner(tiny[0], device="TPU")
    with pytest.raises(ValueError, match="int8 comes from a quantized graph"):
        ov.OpenVinoRunner(tiny[0], precision="int8")


def test_importing_backends_loads_no_runtime():
    code = (
        "import sys, graphopt.backends, graphopt.backends.registry, graphopt.backends.base,"
        " graphopt.backends.tensorrt, graphopt.backends.ort, graphopt.backends.openvino;"
        "print(sorted(m for m in ('onnxruntime', 'openvino', 'tensorrt', 'pycuda', 'cuda')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
