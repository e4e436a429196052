"""Shared fixtures: tiny models written to disk, the CLI entry point with its error boundary."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import helper

from graphopt.cli import main
from graphopt.pass_api import pass_names, preset_names


@pytest.fixture(autouse=True, scope="session")
def _registry_left_as_found():
    """Test passes and presets are registered for their module only (pass_api's
    scoped_registration): after the session the registry holds what the package registers."""
    passes, presets = pass_names(), preset_names()
    yield
    assert pass_names() == passes, "a test left passes registered"
    assert preset_names() == presets, "a test left presets registered"


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    """Relu(x) + Identity, opset 17, one input [1, 4]."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


def _cli_runner(capture):
    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capture.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def run_cli(capsys):
    """Run ``graphopt ARGS`` in-process; returns (exit_code, stdout, stderr)."""
    return _cli_runner(capsys)


@pytest.fixture
def run_cli_fd(capfd):
    """Like ``run_cli``, capturing file descriptors 1 and 2, so that what libraries write
    there directly (onnxruntime's C++ log) is seen too."""
    return _cli_runner(capfd)
