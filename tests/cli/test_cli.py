"""The CLI: optimize, inspect, passes, zoo; JSON shapes; one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

REPORT_SIDE_KEYS = {"nodes", "params", "macs", "size_bytes"}
PASS_KEYS = {"name", "seconds", "modified", "nodes_before", "nodes_after", "stats", "fidelity"}


def test_optimize_writes_model_and_report(tmp_path, run_cli):
    out, report = tmp_path / "m.onnx", tmp_path / "report.json"
    code, stdout, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(out), "--report", str(report))
    assert code == 0, err
    assert out.exists()
    data = json.loads(report.read_text())
    assert {"input", "output", "passes", "fidelity"} <= set(data)
    assert REPORT_SIDE_KEYS <= set(data["input"]) and REPORT_SIDE_KEYS <= set(data["output"])
    assert [p["name"] for p in data["passes"]] == ["cleanup", "fuse"]
    assert all(PASS_KEYS <= set(p) for p in data["passes"])
    assert data["fidelity"]["max_rel"] <= 1e-4
    assert "cleanup" in stdout and "fuse" in stdout


def test_optimize_json_on_stdout_and_passes_spec(tmp_path, run_cli):
    code, stdout, err = run_cli(
        "optimize", "zoo:mlp", "-o", str(tmp_path / "m.onnx"), "--passes", "cleanup", "--json"
    )
    assert code == 0, err
    assert [p["name"] for p in json.loads(stdout)["passes"]] == ["cleanup"]


def test_optimize_with_user_inputs_and_no_verify(tmp_path, run_cli):
    data = tmp_path / "inputs.npz"
    np.savez(data, input=np.ones((2, 256), np.float32))
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "a.onnx"),
                           "--inputs", str(data))
    assert code == 0, err
    code, stdout, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "b.onnx"),
                                "--no-verify", "--json")
    assert code == 0, err
    assert json.loads(stdout)["fidelity"] is None


def test_inspect_json_keys(run_cli):
    code, stdout, err = run_cli("inspect", "zoo:squeezenet", "--json")
    assert code == 0, err
    info = json.loads(stdout)
    keys = {"opset", "inputs", "outputs", "op_histogram", "nodes", "params", "macs", "size_bytes"}
    assert keys <= set(info)
    assert info["opset"] == {"": 9} and info["op_histogram"]["Conv"] == 26
    assert info["inputs"][0]["shape"] == [1, 3, 224, 224]


def test_passes_and_zoo_listings(run_cli):
    code, stdout, _ = run_cli("passes", "--json")
    data = json.loads(stdout)
    assert code == 0 and {"cleanup", "fuse"} <= set(data["passes"])
    assert data["presets"]["lossless"]["spec"] == "cleanup,fuse"
    code, stdout, _ = run_cli("zoo")
    assert code == 0 and "zoo:resnet50" in stdout and "zoo:digits" in stdout


def _bad_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(1).bytes(2048))
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    return {"missing": tmp_path / "absent.onnx", "garbage": garbage, "text": text}


@pytest.mark.parametrize("kind", ["missing", "garbage", "text", "truncated"])
@pytest.mark.parametrize("command", ["optimize", "inspect"])
def test_bad_model_gives_one_line_and_exit_2(tmp_path, run_cli, kind, command):
    if kind == "truncated":
        full = tmp_path / "full.onnx"
        assert run_cli("optimize", "zoo:tiny_cnn", "-o", str(full), "--no-verify")[0] == 0
        path = tmp_path / "cut.onnx"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    else:
        path = _bad_files(tmp_path)[kind]
    code, _, err = run_cli(command, str(path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error:") and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["optimize", "zoo:nope"],
        ["optimize", "zoo:mlp", "--passes", "cleanup,bogus"],
        ["optimize", "zoo:mlp", "--passes", "cleanup(nope=1)"],
        ["optimize", "zoo:mlp", "--preset", "nope"],
    ],
)
def test_bad_names_give_one_line_and_exit_2(run_cli, args, tmp_path):
    code, _, err = run_cli(*args, "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_debug_shows_traceback(run_cli, tmp_path):
    with pytest.raises(Exception, match="no such file"):
        run_cli("optimize", str(tmp_path / "absent.onnx"), "--debug")


def test_refuses_to_overwrite_input(run_cli, tiny_model_path):
    code, _, err = run_cli("optimize", str(tiny_model_path), "-o", str(tiny_model_path))
    assert code == 2 and "refusing" in err


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"wrong": np.ones((1, 256), np.float32)}, "missing"),
        ({"input": np.ones((1, 255), np.float32)}, "axis 1"),
        ({"input": np.ones((1, 256), np.float64)}, "dtype"),
        ({"input": np.ones((256,), np.float32)}, "rank"),
    ],
)
def test_wrong_input_data_is_one_line(tmp_path, run_cli, arrays, message):
    data = tmp_path / "inputs.npz"
    np.savez(data, **arrays)
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "o.onnx"),
                           "--inputs", str(data))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_error_text_with_brackets_is_printed_verbatim(run_cli, tmp_path):
    path = tmp_path / "[weights].onnx"
    code, _, err = run_cli("inspect", str(path))
    assert code == 2 and "[weights].onnx" in err


def test_inspect_size_counts_external_data(tmp_path, run_cli):
    from graphopt.model_io import resolve_model, save_model

    path = save_model(resolve_model("zoo:mlp"), tmp_path / "m.onnx", external_data=True)
    data = tmp_path / "m.onnx.data"
    assert data.exists()
    code, stdout, err = run_cli("inspect", str(path), "--json")
    assert code == 0, err
    assert json.loads(stdout)["size_bytes"] == path.stat().st_size + data.stat().st_size


def test_unsupported_operator_is_one_clear_line(tmp_path, run_cli):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Foo", ["x"], ["y"], domain="my.domain")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)]
    )
    model.ir_version = 8
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "my.domain:Foo" in err and "onnxruntime_src" not in err
    code, _, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"), "--no-verify")
    assert code == 0, err
