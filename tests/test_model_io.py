"""Model I/O: loading errors, external data safety, atomic saves, the input never modified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from graphopt.errors import ModelLoadError, OutputError, UnsafeExternalDataError
from graphopt.model_io import load_model, resolve_model, save_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _external_model(folder: Path, location: str, size: int = 4) -> Path:
    """A MatMul model whose weight (size x size) lives in external data at ``location``."""
    weight = numpy_helper.from_array(np.ones((size, size), np.float32), "w")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * size**2))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    weight.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, size])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "absent.onnx")


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_model(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_model(tmp_path, keep):
    source = resolve_model("zoo:tiny_cnn")
    full = tmp_path / "full.onnx"
    save_model(source, full)
    data = full.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelLoadError):
        load_model(path)


def test_external_data_inside_folder_loads(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.ones(16, np.float32).tobytes())
    model = load_model(_external_model(tmp_path, "weights.bin"))
    assert isinstance(model.graph.initializers["w"].const_value, ir.ExternalTensor)


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_external_data_outside_folder_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "weights.bin").write_bytes(np.ones(16, np.float32).tobytes())
    with pytest.raises(UnsafeExternalDataError, match="outside"):
        load_model(_external_model(folder, location))


def test_symlink_escaping_folder_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "weights.bin").write_bytes(np.ones(16, np.float32).tobytes())
    os.symlink(tmp_path / "weights.bin", folder / "link.bin")
    with pytest.raises(UnsafeExternalDataError):
        load_model(_external_model(folder, "link.bin"))


def test_missing_external_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(_external_model(tmp_path, "absent.bin"))


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path, tiny_model_path):
    model = load_model(tiny_model_path)
    out = tmp_path / "out" / "model.onnx"
    save_model(model, out)
    assert load_model(out).graph.outputs[0].name == "y"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)


def test_failed_save_keeps_previous_output(tmp_path, tiny_model_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ir, "save", explode)
    with pytest.raises(OutputError, match="disk full"):
        save_model(load_model(tiny_model_path), out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "tiny.onnx"]


def test_input_file_never_modified(tmp_path, tiny_model_path, run_cli):
    before = _digest(tiny_model_path)
    code, _, err = run_cli("optimize", str(tiny_model_path), "-o", str(tmp_path / "o.onnx"))
    assert code == 0, err
    assert _digest(tiny_model_path) == before


def test_external_data_round_trip(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.arange(256, dtype=np.float32).tobytes())
    model = load_model(_external_model(tmp_path, "weights.bin", size=16))
    out = tmp_path / "out" / "copy.onnx"
    save_model(model, out, external_data=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.onnx", "copy.onnx.data"]
    again = load_model(out)
    np.testing.assert_array_equal(
        again.graph.initializers["w"].const_value.numpy().ravel(), np.arange(256)
    )


def test_tiny_weights_stay_inline_and_leave_no_empty_data_file(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    model = load_model(_external_model(tmp_path, "weights.bin"))
    out = tmp_path / "out" / "copy.onnx"
    save_model(model, out, external_data=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.onnx"]
    np.testing.assert_array_equal(
        load_model(out).graph.initializers["w"].const_value.numpy().ravel(), np.arange(16))


def test_refuses_to_overwrite_own_external_data(tmp_path):
    (tmp_path / "model.onnx.data").write_bytes(np.ones(16, np.float32).tobytes())
    path = _external_model(tmp_path, "model.onnx.data")
    model = load_model(path)
    with pytest.raises(ModelLoadError, match="refusing"):
        save_model(model, path)
