"""TensorRT runner: everything that needs no GPU (cache key and path, precision modes, profile
shapes, availability); the engine build itself is skipped with the reason when tensorrt or a
CUDA device is missing."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt import zoo
from graphopt.backends.base import TensorMeta
from graphopt.backends.tensorrt import (
    PrecisionMode,
    TensorRtRunner,
    engine_cache_dir,
    engine_cache_key,
    engine_cache_path,
    profile_shapes,
    select_precision_mode,
    tensorrt_available,
)
from graphopt.verify import compare_outputs

TRT10_FLAGS = frozenset({"FP16", "BF16", "INT8"})
TRT11_FLAGS = frozenset()
KEY_ARGS = {"trt_version": "10.9.0", "device_name": "NVIDIA L4", "settings": {"precision": "fp16"}}


# -- cache key and path --------------------------------------------------------------------


def test_cache_key_is_stable_and_covers_every_input():
    key = engine_cache_key(b"model", **KEY_ARGS)
    assert len(key) == 64 and key == engine_cache_key(b"model", **KEY_ARGS)
    variants = [
        engine_cache_key(b"model2", **KEY_ARGS),
        engine_cache_key(b"model", **{**KEY_ARGS, "trt_version": "11.0.0"}),
        engine_cache_key(b"model", **{**KEY_ARGS, "device_name": "NVIDIA A100"}),
        engine_cache_key(b"model", **{**KEY_ARGS, "settings": {"precision": "fp32"}}),
    ]
    assert len({key, *variants}) == 5


def test_cache_key_ignores_settings_order():
    a = engine_cache_key(b"m", trt_version="10", device_name="d", settings={"a": 1, "b": 2})
    b = engine_cache_key(b"m", trt_version="10", device_name="d", settings={"b": 2, "a": 1})
    assert a == b


def test_engine_cache_path_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    key = engine_cache_key(b"model", **KEY_ARGS)
    assert engine_cache_dir() == tmp_path / "tensorrt"
    assert engine_cache_path(key) == tmp_path / "tensorrt" / f"{key}.engine"
    with pytest.raises(ValueError, match="not an engine cache key"):
        engine_cache_path("../../etc/passwd")


def test_engine_cache_dir_defaults_to_the_user_cache(monkeypatch):
    monkeypatch.delenv("GRAPHOPT_CACHE_DIR", raising=False)
    path = engine_cache_dir()
    assert path.name == "tensorrt" and "graphopt" in path.parts


# -- precision modes -----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [TRT10_FLAGS, TRT11_FLAGS])
def test_default_is_strongly_typed_graph_precision(flags):
    for graph in ("fp32", "fp16", "int8"):
        mode = select_precision_mode(None, graph=graph, has_strong_typing=True,
                                     available_flags=flags)
        assert mode == PrecisionMode(graph, True, ())


def test_fp16_on_an_fp32_graph_uses_the_flag_where_it_exists():
    mode = select_precision_mode("fp16", graph="fp32", has_strong_typing=True,
                                 available_flags=TRT10_FLAGS)
    assert mode == PrecisionMode("fp16", False, ("FP16",))


def test_fp16_on_an_fp32_graph_without_flags_asks_for_a_converted_graph():
    with pytest.raises(ValueError, match="no FP16 builder flag.*convert it to fp16"):
        select_precision_mode("fp16", graph="fp32", has_strong_typing=True,
                              available_flags=TRT11_FLAGS)


def test_fp16_on_an_fp16_graph_is_strongly_typed_on_trt11():
    mode = select_precision_mode("fp16", graph="fp16", has_strong_typing=True,
                                 available_flags=TRT11_FLAGS)
    assert mode == PrecisionMode("fp16", True, ())


def test_int8_needs_a_quantized_graph():
    with pytest.raises(ValueError, match="Q/DQ"):
        select_precision_mode("int8", graph="fp32", has_strong_typing=True,
                              available_flags=TRT10_FLAGS)
    mode = select_precision_mode("int8", graph="int8", has_strong_typing=True,
                                 available_flags=TRT11_FLAGS)
    assert mode == PrecisionMode("int8", True, ())


def test_weakly_typed_builder_keeps_low_precision_graphs_with_flags():
    mode = select_precision_mode(None, graph="int8", has_strong_typing=False,
                                 available_flags=TRT10_FLAGS)
    assert mode == PrecisionMode("int8", False, ("INT8",))
    mode = select_precision_mode("fp32", graph="fp32", has_strong_typing=False,
                                 available_flags=TRT10_FLAGS)
    assert mode == PrecisionMode("fp32", False, ())


QUANTIZED = ("mixed", "int8-weights", "int4-weights")


@pytest.mark.parametrize("graph", QUANTIZED)
def test_quantized_graphs_run_strongly_typed_as_they_are(graph):
    for flags in (TRT10_FLAGS, TRT11_FLAGS):
        for requested in (None, graph):
            mode = select_precision_mode(requested, graph=graph, has_strong_typing=True,
                                         available_flags=flags)
            assert mode == PrecisionMode(graph, True, ())


@pytest.mark.parametrize("graph", ["int8", *QUANTIZED])
@pytest.mark.parametrize("requested", ["fp32", "fp16", "bf16", "int8"])
def test_quantized_graphs_are_never_lowered_or_raised(graph, requested):
    if requested == graph:
        return
    with pytest.raises(ValueError, match=f"holds {graph}, TensorRT cannot run it as"
                                         f" {requested}$"):
        select_precision_mode(requested, graph=graph, has_strong_typing=True,
                              available_flags=TRT10_FLAGS)


def test_weakly_typed_builder_keeps_quantized_graphs_with_their_flag():
    for graph, flag in (("mixed", "INT8"), ("int8-weights", "INT8"), ("int4-weights", "INT4")):
        mode = select_precision_mode(None, graph=graph, has_strong_typing=False,
                                     available_flags=TRT10_FLAGS | {"INT4"})
        assert mode == PrecisionMode(graph, False, (flag,))
    with pytest.raises(ValueError, match="neither type strongly nor set INT4"):
        select_precision_mode(None, graph="int4-weights", has_strong_typing=False,
                              available_flags=TRT10_FLAGS)


def test_int8_on_a_half_graph_still_asks_for_qdq():
    with pytest.raises(ValueError, match="holds fp16.*Q/DQ"):
        select_precision_mode("int8", graph="fp16", has_strong_typing=True,
                              available_flags=TRT10_FLAGS)


def test_cannot_raise_precision_above_the_graph():
    with pytest.raises(ValueError, match="holds fp16, TensorRT cannot run it as fp32"):
        select_precision_mode("fp32", graph="fp16", has_strong_typing=True,
                              available_flags=TRT10_FLAGS)


# -- optimization profile shapes -----------------------------------------------------------


def _meta(*shape):
    return TensorMeta(np.dtype(np.float32), tuple(shape))


def test_static_inputs_need_no_profile():
    assert profile_shapes({"x": _meta(1, 3, 224, 224)}, batch_size=1) == {}


def test_dynamic_batch_gets_min_opt_max():
    shapes = profile_shapes({"x": _meta("batch", 3, 32, 32), "y": _meta(None, 10)},
                            batch_size=4, max_batch_size=16)
    assert shapes == {
        "x": ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32)),
        "y": ((1, 10), (4, 10), (16, 10)),
    }
    assert profile_shapes({"x": _meta(-1, 8)}, batch_size=2)["x"] == ((1, 8), (2, 8), (2, 8))


def test_other_dynamic_dims_need_a_size():
    inputs = {"ids": _meta("batch", "seq")}
    with pytest.raises(ValueError, match="'ids' axis 1 .seq. is dynamic"):
        profile_shapes(inputs, batch_size=1)
    by_name = profile_shapes(inputs, batch_size=1, dims={"seq": 128})
    by_axis = profile_shapes(inputs, batch_size=1, dims={"ids:1": 64})
    assert by_name["ids"] == ((1, 128), (1, 128), (1, 128))
    assert by_axis["ids"] == ((1, 64), (1, 64), (1, 64))


def test_profile_from_zoo_model_metadata():
    from graphopt.backends.ort import OrtRunner

    with OrtRunner(zoo.path("tiny_cnn")) as runner:
        inputs = runner.input_metadata()
    shapes = profile_shapes(inputs, batch_size=8)
    assert shapes["input"] == ((1, 3, 32, 32), (8, 3, 32, 32), (8, 3, 32, 32))


# -- availability and the device part ------------------------------------------------------


def test_availability_is_a_reason_not_an_exception():
    ok, reason = tensorrt_available()
    assert isinstance(ok, bool)
    assert ok or (reason and "\n" not in reason)


def test_runner_validates_precision_without_a_device():
    with pytest.raises(ValueError, match="not fp32, fp16, bf16 or int8"):
        TensorRtRunner(zoo.path("tiny_cnn"), precision="fp8")
    runner = TensorRtRunner(zoo.path("tiny_cnn"), precision="fp16")
    assert not runner.is_active and runner.supports_async is False


def test_engine_build_and_inference_on_a_gpu(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed: no engine can be built")
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT cannot run here: {reason}")
    from graphopt import oracle
    from graphopt.model_io import resolve_model
    from graphopt.verify import random_inputs

    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path))
    model = resolve_model("zoo:tiny_cnn")
    feed = random_inputs(model, batch_size=2)
    reference = oracle.run_model(oracle.make_session(model), feed)
    with TensorRtRunner(zoo.path("tiny_cnn"), batch_size=2) as runner:
        assert runner.settings["engine_cache"] == "miss"
        assert compare_outputs(reference, runner.infer(feed)).max_rel <= 1e-3
        assert runner.last_device_ms is not None and runner.last_device_ms > 0
    with TensorRtRunner(zoo.path("tiny_cnn"), batch_size=2) as runner:
        assert runner.settings["engine_cache"] == "hit"


def test_model_identity_covers_external_data(tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    from graphopt.backends.tensorrt import _model_identity

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.data", size_threshold=0)
    before = _model_identity(path)
    assert before == _model_identity(path)
    data = tmp_path / "m.data"
    data.write_bytes(np.full((4, 4), 2, np.float32).tobytes())
    assert _model_identity(path) != before  # same .onnx bytes, new weights: new identity


def test_strong_typing_detection_across_versions():
    from types import SimpleNamespace

    from graphopt.backends.tensorrt import _has_strong_typing

    def fake(version, *flags):
        return SimpleNamespace(__version__=version,
                               NetworkDefinitionCreationFlag=SimpleNamespace(
                                   **{f: i for i, f in enumerate(flags)}))

    assert _has_strong_typing(fake("10.3.0", "STRONGLY_TYPED"))
    assert not _has_strong_typing(fake("8.6.1", "EXPLICIT_BATCH"))
    assert _has_strong_typing(fake("11.0.0"))  # always strongly typed, flag gone
