"""Every failure caused by the input is one line on stderr and exit code 2; library logs
(onnx-ir, onnxruntime, numpy warnings) appear only with --verbose or --debug."""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphopt.errors import reason_line


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _relu(tmp_path, dims):
    return _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])


def _conv(tmp_path, *, group=1, with_weight=True):
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    return _save(
        tmp_path,
        [helper.make_node("Conv", ["x", "w"] if with_weight else ["x"], ["y"], group=group)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [weight] if with_weight else [])


def _one_line(code, err, *fragments):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(("dims", "fragment"), [
    ([1, -3], "size -3 on axis 1"),
    ([1, 0], "size 0 on axis 1"),
    ([1, 2**40], "GiB of random data"),
])
def test_negative_zero_and_huge_dims(tmp_path, run_cli, dims, fragment):
    code, _, err = run_cli("optimize", str(_relu(tmp_path, dims)), "-o", str(tmp_path / "o.onnx"))
    _one_line(code, err, fragment)


def test_onnxruntime_failure_while_running_is_one_line(tmp_path, run_cli):
    code, _, err = run_cli("optimize", str(_conv(tmp_path, group=7)),
                           "-o", str(tmp_path / "o.onnx"))
    _one_line(code, err, "onnxruntime")
    assert "ONNXRuntimeError" not in err and "onnxruntime_src" not in err


def test_inspect_of_a_conv_without_weight(tmp_path, run_cli):
    code, _, err = run_cli("inspect", str(_conv(tmp_path, with_weight=False)), "--json")
    assert code in (0, 2), err
    if code == 2:
        _one_line(code, err)


def test_fuse_max_rounds_zero(run_cli, tmp_path):
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "o.onnx"),
                           "--passes", "fuse(max_rounds=0)")
    _one_line(code, err, "max_rounds")


def test_library_warnings_only_with_verbose(tmp_path, run_cli, monkeypatch):
    """A graph read that makes onnx-ir log warnings: one line by default, the warnings with
    --verbose."""
    monkeypatch.setattr(logging.root, "handlers", [])  # as in a fresh process
    path = _save(tmp_path, [helper.make_node("Relu", ["nowhere"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    _one_line(code, err, "nowhere")
    code, _, err = run_cli("--verbose", "optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 2 and "WARNING onnx_ir" in err and len(err.strip().splitlines()) > 1


def print_warning(message, category, filename, lineno, file=None, line=None):
    """Python's own way of showing a warning (pytest records them instead)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def test_numpy_warnings_are_hidden(tmp_path, run_cli, monkeypatch):
    from graphopt import verify

    real = verify.compare_outputs

    def noisy(*args, **kwargs):
        warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "compare_outputs", noisy)
    with warnings.catch_warnings():  # warnings printed on stderr, as outside pytest
        warnings.simplefilter("always")
        warnings.showwarning = print_warning
        code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "o.onnx"))
        assert code == 0 and "RuntimeWarning" not in err, err
        code, _, err = run_cli("--verbose", "optimize", "zoo:mlp", "-o", str(tmp_path / "o.onnx"))
        assert code == 0 and "RuntimeWarning" in err, err


OPENVINO_LOAD_ERROR = (
    "Exception from src/inference/src/cpp/core.cpp:84:\n"
    "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
    "FrontEnd API failed with OpConversionFailure:\n"
    "Model wasn't fully converted. Failed operations detailed log:\n"
    "-- Reshape-17 with a message:\n"
    "While validating ONNX node '<Node(Reshape): m>': Check 'x' failed at src/op/reshape.cpp:37:\n"
    "PartialShape pattern must be an integral number.\n\nSummary:\n-- Conversion is failed\n"
)


def test_openvino_errors_show_their_reason():
    assert reason_line(RuntimeError(OPENVINO_LOAD_ERROR)) == (
        "Reshape-17 with a message: PartialShape pattern must be an integral number.")
    assert reason_line(RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\nThe size of the initializer does"
        " not match\n")) == "The size of the initializer does not match"


def test_openvino_load_error_through_the_runner(tmp_path):
    pytest.importorskip("openvino", reason="needs openvino")
    from graphopt.backends.registry import start_runner
    from graphopt.errors import GraphoptError

    reshape = _save(
        tmp_path, [helper.make_node("Reshape", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1])],
        [numpy_helper.from_array(np.array([4.0, 1.0], np.float32), "w")])
    with pytest.raises(GraphoptError) as info:
        start_runner("openvino-cpu", reshape, label="m.onnx")
    text = str(info.value)
    assert "core.cpp" not in text and len(text.splitlines()) == 1
    assert len(text.split(": ", 1)[1]) > 20, text
    print(text)
