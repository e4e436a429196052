"""Backend names on the command line: grammar, availability, runner construction."""

from __future__ import annotations

import pytest

from graphopt import zoo
from graphopt.backends.ort import OrtRunner
from graphopt.backends.registry import (
    BACKENDS,
    BackendSpec,
    available_backends,
    create_runner,
    parse_backend,
    parse_backend_list,
)
from graphopt.errors import BackendUnavailableError

EXPECTED_NAMES = {
    "ort-cpu", "ort-cuda", "ort-trt", "ort-openvino",
    "openvino-cpu", "openvino-gpu", "openvino-npu", "openvino-auto", "tensorrt",
}


def test_parse_name_precision_and_options():
    assert parse_backend("ort-cpu") == BackendSpec("ort-cpu")
    assert parse_backend("openvino-cpu:f32") == BackendSpec("openvino-cpu", "fp32")
    assert parse_backend("openvino-cpu:BF16") == BackendSpec("openvino-cpu", "bf16")
    spec = parse_backend("openvino-cpu:bf16@hint=throughput, streams=2")
    assert spec == BackendSpec("openvino-cpu", "bf16", {"hint": "throughput", "streams": "2"})
    assert str(spec) == "openvino-cpu:bf16@hint=throughput,streams=2"
    assert parse_backend("tensorrt:fp16@workspace_mb=512").options == {"workspace_mb": "512"}


def test_parse_list_keeps_options_with_their_backend():
    specs = parse_backend_list("ort-cpu@threads=2,opt=basic,openvino-cpu,openvino-cpu:f32")
    assert [str(s) for s in specs] == [
        "ort-cpu@threads=2,opt=basic", "openvino-cpu", "openvino-cpu:fp32",
    ]
    assert [str(s) for s in parse_backend_list(["ort-cpu", "openvino-cpu:bf16"])] == [
        "ort-cpu", "openvino-cpu:bf16",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "unknown backend 'nope'"),
        ("ort-cpu:fp16", "ort-cpu cannot run fp16"),
        ("openvino-cpu:fp8", "unknown precision"),
        ("ort-cpu@colour=blue", "unknown option 'colour'"),
        ("ort-cpu@threads", "is not KEY=VALUE"),
    ],
)
def test_bad_specs_raise_one_line(text, message):
    with pytest.raises(BackendUnavailableError, match=message) as info:
        parse_backend(text)
    assert "\n" not in str(info.value)


def test_empty_list_is_an_error():
    with pytest.raises(BackendUnavailableError, match="no backend"):
        parse_backend_list(" , ")


def test_available_backends_lists_every_name_with_a_reason():
    rows = available_backends()
    assert {name for name, _, _ in rows} == EXPECTED_NAMES == set(BACKENDS)
    by_name = {name: (ok, reason) for name, ok, reason in rows}
    assert by_name["ort-cpu"] == (True, "")
    for name, (ok, reason) in by_name.items():
        assert ok or (reason and "\n" not in reason), name


def test_tensorrt_unavailable_here_says_why():
    ok = {name: available for name, available, _ in available_backends()}["tensorrt"]
    if ok:
        pytest.skip("tensorrt is usable on this machine")
    with pytest.raises(BackendUnavailableError, match="tensorrt is not available here: "):
        create_runner("tensorrt:fp16", zoo.path("tiny_cnn"))


def test_create_runner_applies_threads_and_spec_options():
    path = zoo.path("tiny_cnn")
    runner = create_runner("ort-cpu@opt=basic,io_binding=yes,spin=off", path, threads=3)
    assert isinstance(runner, OrtRunner)
    assert (runner.threads, runner.optimization, runner.io_binding) == (3, "basic", True)
    assert runner.spinning is False
    runner = create_runner("ort-cpu@threads=1", path, threads=3)
    assert runner.threads == 1  # the spec wins over the global --threads
    assert not runner.is_active


def test_create_runner_rejects_bad_option_values():
    path = zoo.path("tiny_cnn")
    with pytest.raises(BackendUnavailableError, match="option threads"):
        create_runner("ort-cpu@threads=many", path)
    with pytest.raises(BackendUnavailableError, match="unknown optimization level"):
        create_runner("ort-cpu@opt=ludicrous", path)


def test_create_openvino_runner_with_precision():
    pytest.importorskip("openvino", reason="needs openvino")
    runner = create_runner("openvino-cpu:f32@hint=throughput,streams=2", zoo.path("tiny_cnn"),
                           threads=1)
    assert runner.requested_precision == "fp32"
    assert runner.compile_config() == {
        "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "1",
    }
