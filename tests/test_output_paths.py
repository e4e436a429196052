"""The output-path checker every command calls before work (optimize's -o/--report, bench's
--json): written paths never name read files, each other, non-regular files or the zoo."""

from __future__ import annotations

import os

import numpy as np
import pytest

from graphopt.errors import OutputError
from graphopt.model_io import load_model, resolve_model, save_model
from graphopt.output_paths import check_output_paths, data_files, model_files


@pytest.fixture
def model_with_data(tmp_path):
    path = save_model(resolve_model("zoo:mlp"), tmp_path / "in" / "m.onnx", external_data=True)
    assert (path.parent / "m.onnx.data").exists()
    return path


def test_model_files_are_the_model_and_its_external_data(model_with_data):
    expected = [model_with_data, (model_with_data.parent / "m.onnx.data").resolve()]
    assert model_files(model_with_data, load_model(model_with_data)) == expected
    assert [p.resolve() for p in model_files(model_with_data)] == [p.resolve() for p in expected]
    assert model_files("zoo:mlp") == []


@pytest.mark.parametrize("target", ["model", "data", "link to data", "hard link to model"])
def test_bench_json_over_a_model_file_is_refused(model_with_data, tmp_path, target):
    """``graphopt bench m.onnx --json X`` checks X like this before benchmarking."""
    data = model_with_data.parent / "m.onnx.data"
    path = {"model": model_with_data, "data": data}.get(target, tmp_path / "x.json")
    if target == "link to data":
        path.symlink_to(data)
    elif target == "hard link to model":
        os.link(model_with_data, path)
    with pytest.raises(OutputError, match="refusing to write over"):
        check_output_paths({"--json": path}, reads=model_files(model_with_data))


def test_distinct_paths_pass(model_with_data, tmp_path):
    check_output_paths({"--json": tmp_path / "bench.json"}, reads=model_files(model_with_data))
    check_output_paths({"--report": tmp_path / "r.json", "--json": None},
                       model_output=tmp_path / "o.onnx", reads=model_files(model_with_data))


def test_two_outputs_on_one_file_are_refused(tmp_path):
    with pytest.raises(OutputError, match="same file as -o"):
        check_output_paths({"--report": tmp_path / "o.onnx"}, model_output=tmp_path / "o.onnx")


def test_the_previous_outputs_data_counts_as_written(model_with_data, tmp_path):
    """Saving over o.onnx removes the data file it refers to: that may not be an input."""
    out = tmp_path / "o.onnx"
    save_model(load_model(model_with_data), out)
    with pytest.raises(OutputError, match="o.onnx.data"):
        check_output_paths({}, model_output=out, reads=[tmp_path / "o.onnx.data"])


def test_data_folders_and_their_files_are_read(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"png")
    assert data_files(folder) == [folder, folder / "a.png"]
    assert data_files("zoo:digits") == [] and data_files(None) == []
    with pytest.raises(OutputError, match="a.png"):
        check_output_paths({"--report": folder / "a.png"}, reads=data_files(folder))


@pytest.mark.parametrize("kind", ["fifo", "folder", "empty", "under a file"])
def test_non_regular_targets_are_refused(tmp_path, kind):
    path = tmp_path / "x.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path = ""
    else:
        path.write_text("{}")
        path = path / "y.json"
    with pytest.raises(OutputError):
        check_output_paths({"--json": path})


def test_zoo_cache_and_packaged_zoo_data_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path / "cache"))
    from graphopt import zoo

    for path in (zoo.path("squeezenet"), zoo.cache_dir() / "new.onnx", zoo.path("digits")):
        with pytest.raises(OutputError, match="zoo"):
            check_output_paths({"--json": path})
    np.testing.assert_equal(zoo.path("digits").exists(), True)
