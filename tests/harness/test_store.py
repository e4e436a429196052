"""The result store: keys that follow the content, torn lines ignored, writers that never mix."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing

import numpy as np

from graphopt.harness.store import Cell, ResultStore, cell_key, model_digest
from graphopt.model_io import resolve_model, save_model

TIMING = {"duration": 0.1, "sessions": 1}


def _cell(**changes) -> Cell:
    cell = Cell(model="zoo:mlp", pipeline="lossless", pipeline_spec="cleanup,fuse",
                backend="ort-cpu", timing=TIMING, model_hash="sha256:ab", version="1.0")
    return dataclasses.replace(cell, **changes)


def test_the_key_follows_everything_that_decides_a_measurement():
    base = cell_key(_cell())
    assert cell_key(_cell(model="elsewhere/mlp.onnx")) == base  # same content, other path
    for change in ({"model_hash": "sha256:cd"}, {"pipeline_spec": "cleanup"},
                   {"backend": "openvino-cpu"}, {"timing": {**TIMING, "sessions": 3}},
                   {"version": "1.1"}):
        assert cell_key(_cell(**change)) != base, change


def test_the_model_digest_covers_external_data(tmp_path):
    model = resolve_model("zoo:mlp")
    path = save_model(model, tmp_path / "m.onnx", external_data=True)
    data = path.with_name("m.onnx.data")
    before = model_digest(path)
    assert before == model_digest(path) and before.startswith("sha256:")
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF  # one weight byte, the .onnx file unchanged
    data.write_bytes(bytes(raw))
    assert model_digest(path) != before
    assert model_digest("zoo:mlp") == model_digest("zoo:mlp")


def test_a_torn_last_line_is_ignored_and_the_next_record_stays_whole(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    store.append({"key": "a", "status": "ok"})
    with open(store.path, "ab") as handle:  # a writer killed in the middle of its line
        handle.write(b'{"key": "b", "status": "o')
    assert [r["key"] for r in store.records()] == ["a"]
    store.append({"key": "c", "status": "ok"})
    assert [r["key"] for r in store.records()] == ["a", "c"]
    assert store.finished() == {"a", "c"}
    lines = store.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and json.loads(lines[-2]) == {"key": "c", "status": "ok"}


def test_skipped_cells_are_not_finished_and_the_last_record_wins(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    store.append({"key": "a", "status": "skipped", "reason": "no prune pass"})
    assert store.finished() == set()
    store.append({"key": "a", "status": "ok"})
    assert store.finished() == {"a"} and store.latest()["a"]["status"] == "ok"
    assert ResultStore(tmp_path / "missing.jsonl").records() == []


def _writer(path: str, writer: int, count: int) -> None:
    store = ResultStore(path)
    payload = "x" * 20_000  # several pipe buffers: an unlocked, split write would interleave
    for index in range(count):
        store.append({"key": f"{writer}-{index}", "payload": payload,
                      "values": np.arange(3).tolist()})


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = str(tmp_path / "r.jsonl")
    context = multiprocessing.get_context("fork")  # quick: the child only appends
    workers = [context.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    raw = open(path, "rb").read().split(b"\n")
    assert raw[-1] == b""
    keys = [json.loads(line)["key"] for line in raw[:-1]]  # every line parses
    assert sorted(keys) == sorted(f"{w}-{i}" for w in range(4) for i in range(40))
