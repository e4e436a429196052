"""``graphopt optimize`` with data: --calib, --inputs, --preprocess, --budget; bad data is one
line and exit code 2, and nothing is written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "models" / "images"


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_calib_npz_verifies_on_its_held_out_part(tmp_path, run_cli):
    data = tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(0).normal(size=(12, 256)).astype(np.float32))
    code, stdout, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "m.onnx"),
                                "--calib", str(data), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["verification_data"].endswith("held-out part (3 samples)")


def test_calib_image_folder(tmp_path, run_cli):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(4):
        Image.new("RGB", (40, 30), (60 * index, 20, 200)).save(folder / f"{index}.png")
    code, stdout, err = run_cli(
        "optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"), "--calib", str(folder),
        "--preprocess", "mean=0.485;0.456;0.406,std=0.229;0.224;0.225", "--json")
    assert code == 0, err
    assert "images (4 images), held-out part (1 samples)" in json.loads(stdout)[
        "verification_data"]


def test_calib_shared_photos(tmp_path, run_cli):
    if not SHARED_IMAGES.is_dir():
        message = f"{SHARED_IMAGES} is not here (the shared models sit beside the checkout)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}; CI must have them")
        pytest.skip(message)
    code, stdout, err = run_cli(
        "optimize", "zoo:squeezenet", "-o", str(tmp_path / "m.onnx"),
        "--calib", str(SHARED_IMAGES), "--preprocess", "size=224,resize=crop", "--json")
    assert code == 0, err
    assert "held-out part (1 samples)" in json.loads(stdout)["verification_data"]


def test_zoo_digits_gets_test_accuracy_and_calibration_split(tmp_path, run_cli):
    code, stdout, err = run_cli("optimize", "zoo:digits", "-o", str(tmp_path / "d.onnx"),
                                "--calib", "zoo:digits", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["verification_data"].startswith("zoo:digits (calibration split")
    assert report["accuracy"] is None  # a lossless pipeline: nothing to score


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda d: _npz(d / "a.npz", wrong=np.ones((2, 256), np.float32)),
     r"does not match the model: missing \['input'\], unexpected \['wrong'\]"),
    (lambda d: _npz(d / "a.npz", input=np.ones((2, 256), np.float64)),
     "has dtype float64, the model expects float32"),
    (lambda d: _npz(d / "a.npz", input=np.ones((2, 256, 1), np.float32)),
     "the model expects rank 2"),
    (lambda d: _npz(d / "a.npz", input=np.ones((2, 128), np.float32)),
     "has size 128 on axis 1, the model expects 256"),
    (lambda d: _npz(d / "a.npz", input=np.ones((0, 256), np.float32)), "no samples"),
    (lambda d: str(d / "missing.npz"), "no such data file or folder"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), "no images"),
])
def test_bad_calibration_data_is_one_line(tmp_path, run_cli, make, message):
    out = tmp_path / "never.onnx"
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out), "--calib", make(tmp_path))
    assert re.search(message, err), err
    _one_line_error(code, err)
    assert not out.exists()


def test_unreadable_image_and_bad_preprocess(tmp_path, run_cli):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"\xff\xd8 truncated")
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"),
                           "--calib", str(folder))
    assert "photo.jpg: not a readable image" in _one_line_error(code, err)
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"),
                           "--calib", str(folder), "--preprocess", "gamma=2")
    assert "'gamma=2' is not one of" in _one_line_error(code, err)


@pytest.mark.parametrize("args, message", [
    (["--budget", "sqnr>high"], "is not METRIC>=VALUE"),
    (["--on-budget", "ignore"], "expected stop or warn"),
    (["--budget", "accuracy_drop<=1"], "needs labelled data"),
    (["--budget", "sqnr>=30", "--no-verify"], "needs verification"),
])
def test_bad_budget_options(tmp_path, run_cli, args, message):
    out = tmp_path / "never.onnx"
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out), *args)
    assert message in _one_line_error(code, err)
    assert not out.exists()


def test_digits_fp16_reports_test_accuracy_before_and_after(tmp_path, run_cli):
    code, stdout, err = run_cli("optimize", "zoo:digits", "--preset", "fp16",
                                "-o", str(tmp_path / "d.onnx"), "--json")
    assert code == 0, err
    accuracy = json.loads(stdout)["accuracy"]
    assert accuracy["data"].startswith("zoo:digits:test")
    assert accuracy["before"] == pytest.approx(99.56, abs=0.01)
    assert abs(accuracy["after"] - accuracy["before"]) <= 0.1
    convert = json.loads(stdout)["passes"][-1]
    assert convert["name"] == "convert_float" and convert["accuracy"] == accuracy["after"]


def test_broken_budget_names_the_pass_and_writes_nothing(tmp_path, run_cli):
    out, report = tmp_path / "d.onnx", tmp_path / "report.json"
    code, _, err = run_cli("optimize", "zoo:digits", "--preset", "fp16", "-o", str(out),
                           "--report", str(report), "--budget", "sqnr>=200")
    line = _one_line_error(code, err)
    assert "pass 'convert_float' breaks the budget: sqnr" in line and "sqnr>=200" in line
    assert not out.exists() and not report.exists()
    assert list(tmp_path.iterdir()) == []


def test_report_carries_what_each_pass_explained(tmp_path, run_cli):
    code, stdout, err = run_cli("optimize", "zoo:digits", "--preset", "int8", "--calib",
                                "zoo:digits", "--budget", "sqnr>=45", "-o",
                                str(tmp_path / "d.onnx"), "--json")
    assert code == 0, err
    quantize = json.loads(stdout)["passes"][-1]
    assert quantize["name"] == "quantize"
    kept = [e for e in quantize["explanations"] if "kept float for the budget" in e]
    assert len(kept) == quantize["stats"]["layers_kept_float_for_budget"] > 0
