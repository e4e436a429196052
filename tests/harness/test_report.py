"""Reports: a self-contained HTML page and a Markdown summary from a result store."""

from __future__ import annotations

import html.parser
import json
import math
from pathlib import Path

import pytest

from graphopt.errors import GraphoptError
from graphopt.harness.report import load_report, pareto_front, write_report
from graphopt.harness.store import ResultStore
from graphopt.harness.suite import load_suite, run_suite

TINY = Path(__file__).resolve().parents[2] / "bench" / "suites" / "tiny.toml"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultStore:
    store = ResultStore(tmp_path_factory.mktemp("store") / "r.jsonl")
    run_suite(load_suite(TINY), store)
    store.append({"key": "k", "status": "skipped", "reason": "tensorrt is not available here",
                  "cell": {"model": "zoo:mlp", "pipeline": "none", "backend": "tensorrt",
                           "timing": {}}})
    return store


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (0.5, 5.0), (2.0, 25.0), (math.nan, 99)]
    assert pareto_front(points) == [3, 0, 1]


def test_speedups_are_against_the_fp32_onnxruntime_cell_of_the_same_model(store):
    data = load_report(store)
    assert len(data.rows) == 4 and data.models == ["zoo:tiny_cnn", "zoo:mlp"]
    baseline = [r for r in data.rows if r.pipeline == "none"]
    assert all(r.speedup == 1.0 for r in baseline)
    assert all(r.speedup is not None and r.speedup > 0 for r in data.rows)
    assert data.not_measured == [{"cell": "zoo:mlp [none] on tensorrt", "status": "skipped",
                                  "reason": "tensorrt is not available here"}]


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        elif tag not in ("meta", "br"):
            self.open.append(tag)
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and tag != "img"]

    def handle_endtag(self, tag):
        assert self.open.pop() == tag


def test_the_report_is_self_contained_html_and_markdown(store, tmp_path, run_cli):
    code, stdout, err = run_cli("report", str(store.path), "--out", str(tmp_path / "out"))
    assert code == 0, err
    page, markdown = tmp_path / "out" / "report.html", tmp_path / "out" / "report.md"
    assert str(markdown) in stdout.replace("\n", "")
    parser = _Page()
    parser.feed(page.read_text())
    assert parser.open == [] and parser.links == []  # balanced, nothing fetched
    assert len(parser.sources) >= 6
    assert all(s.startswith("data:image/png;base64,") for s in parser.sources)
    text = markdown.read_text()
    assert "| none on ort-cpu | fp32 |" in text and "1.00x" in text
    assert "estimate:time-x-power" in text and "tensorrt is not available here" in text
    for name in ("zoo-mlp-latency.png", "zoo-mlp-fidelity.png", "speedup.png", "size.png",
                 "energy.png"):
        assert f"({name})" in text and (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_a_store_without_results_is_one_error(tmp_path, run_cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"key": "x"})[:5])  # only a torn line
    code, _, err = run_cli("report", str(empty), "--out", str(tmp_path / "e"))
    assert code == 2 and "no results" in err


def test_a_missing_store_is_one_error(tmp_path):
    with pytest.raises(GraphoptError, match="no such result store"):
        write_report(tmp_path / "absent.jsonl", tmp_path / "out")
