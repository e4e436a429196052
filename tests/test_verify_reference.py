"""A "verified" run is never wrong: the reference is onnxruntime on the user's file, models the two
readers see differently are refused, NaN/inf are reported with their tensor and compare equal
where both sides have them, Constant tensors in external data load and save correctly."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphopt import oracle
from graphopt.errors import ModelLoadError, VerificationError
from graphopt.model_io import load_model
from graphopt.pipeline import Pipeline
from graphopt.verify import Verifier, compare_outputs


def _save(graph: onnx.GraphProto, path, opset: int = 17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _matmul_graph(weights: list[np.ndarray]) -> onnx.GraphProto:
    size = weights[0].shape[0]
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
        [numpy_helper.from_array(w, "w") for w in weights])


def _ort(path, feeds):
    return oracle.run_model(oracle.make_file_session(path), feeds)


def test_duplicate_initializer_names_are_refused_in_one_line(tmp_path, run_cli):
    """onnxruntime uses the first, onnx-ir the second: never report such a model verified."""
    small, large = np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32) * 1000
    path = _save(_matmul_graph([small, large]), tmp_path / "dup.onnx")
    with pytest.raises(ModelLoadError, match="two initializers named 'w'"):
        load_model(path)
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'w'" in err, err
    assert not (tmp_path / "o.onnx").exists()


def test_sparse_initializer_listed_as_input_is_refused(tmp_path, run_cli):
    values = numpy_helper.from_array(np.array([5.0], np.float32), "sp")
    indices = numpy_helper.from_array(np.array([1], np.int64), "sp_idx")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "sp"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("sp", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])])
    path = _save(graph, tmp_path / "sparse.onnx")
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 2 and "sparse initializer ('sp')" in err, err
    assert len(err.strip().splitlines()) == 1


def test_reference_is_onnxruntime_on_the_file(tmp_path):
    """When graphopt's reading of a file differs from onnxruntime's (here simulated by
    editing the loaded model), the run is refused before any pass."""
    weight = np.arange(16, dtype=np.float32).reshape(4, 4)
    path = _save(_matmul_graph([weight]), tmp_path / "m.onnx")
    model = load_model(path)
    verifier = Verifier(model, source=path)
    assert verifier.load_fidelity.max_rel == 0
    feeds = verifier.feeds[0]
    np.testing.assert_array_equal(verifier.reference["y"], _ort(path, feeds)["y"])
    model.graph.initializers["w"].const_value = ir.tensor(weight * 2)
    with pytest.raises(VerificationError, match="read differently"):
        Pipeline.from_preset("lossless").run(model, source=path)


def test_nan_equal_on_both_sides_and_counted_when_not():
    ref = np.array([[1.0, np.nan, np.inf, -np.inf]], np.float32)
    same = compare_outputs({"y": ref}, {"y": ref.copy()})
    assert same.max_rel == 0 and same.nonfinite_mismatch == 0 and math.isinf(same.sqnr_db)
    moved = ref.copy()
    moved[0, 1] = 0.0
    moved[0, 2] = -np.inf
    fid = compare_outputs({"y": ref}, {"y": moved})
    assert fid.nonfinite_mismatch == 2 and math.isinf(fid.max_rel)
    assert "NaN/inf differ at 2" in fid.summary()


def _nan_weight_model(tmp_path):
    weight = np.eye(4, dtype=np.float32)
    weight[2, 2] = np.nan
    return _save(_matmul_graph([weight]), tmp_path / "nan.onnx")


def test_nan_in_weights_is_reported_with_its_tensor(tmp_path, run_cli):
    path = _nan_weight_model(tmp_path)
    out = tmp_path / "o.onnx"
    code, stdout, err = run_cli("optimize", str(path), "-o", str(out))
    assert code == 0, err
    assert "weight 'w' (1 NaN)" in err and "changed the outputs" not in err
    assert "rel 0.0e+00" in stdout
    feeds = {"x": np.ones((1, 4), np.float32)}
    np.testing.assert_array_equal(_ort(path, feeds)["y"], _ort(out, feeds)["y"])


def test_nan_in_inputs_is_reported_with_its_input(tmp_path, run_cli):
    path = _save(_matmul_graph([np.eye(4, dtype=np.float32)]), tmp_path / "m.onnx")
    data = tmp_path / "x.npz"
    x = np.ones((1, 4), np.float32)
    x[0, 0] = np.inf
    np.savez(data, x=x)
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"),
                           "--inputs", str(data))
    assert code == 0, err
    assert "input 'x' (1 inf)" in err


def test_a_pass_that_moves_nan_is_named_as_such(tmp_path):
    model = load_model(_nan_weight_model(tmp_path))
    verifier = Verifier(model)
    weight = model.graph.initializers["w"].const_value.numpy().copy()
    weight[2, 2] = 1.0
    model.graph.initializers["w"].const_value = ir.tensor(weight)
    assert verifier.check(model).nonfinite_mismatch > 0
    assert verifier.nonfinite_sources == ["weight 'w' (1 NaN)"]


def _external_constant_model(folder):
    """y = x + k, where the Constant k's tensor lives in const.bin beside the model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "const.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    tensor = onnx.TensorProto(name="k", data_type=TensorProto.FLOAT, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "const.bin"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=tensor),
         helper.make_node("Add", ["x", "k"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return _save(graph, folder / "m.onnx")


@pytest.mark.parametrize("verify", [True, False])
def test_constant_in_external_data_loads_and_saves(tmp_path, run_cli, verify):
    path = _external_constant_model(tmp_path / "in")
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()  # outputs go to existing folders only
    code, _, err = run_cli("optimize", str(path), "-o", str(out),
                           *([] if verify else ["--no-verify"]))
    assert code == 0, err
    (tmp_path / "in" / "const.bin").unlink()  # the output must not need the input's files
    feeds = {"x": np.ones(4, np.float32)}
    np.testing.assert_array_equal(_ort(out, feeds)["y"], 1 + np.arange(4, dtype=np.float32))
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.onnx"]
