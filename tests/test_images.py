"""Image folders as model input: decoding, the preprocessing spec, and one-line errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper
from PIL import Image

from graphopt.calibration import open_data
from graphopt.errors import GraphoptError
from graphopt.images import Preprocess
from graphopt.model_io import resolve_model


def _identity_model(shape, inputs=("x",)) -> ir.Model:
    graph = helper.make_graph(
        [helper.make_node("Identity", [inputs[0]], ["y"])], "g",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape) for n in inputs],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)],
    )
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _solid(path, colour, size=(12, 10)):
    Image.new("RGB", size, colour).save(path)


def test_normalised_nchw(tmp_path):
    _solid(tmp_path / "a.png", (255, 0, 51))
    _solid(tmp_path / "b.jpg", (0, 0, 0))
    data = open_data(tmp_path, _identity_model([1, 3, 4, 6]),
                     preprocess="scale=1/255,mean=0.5;0;0.1,std=0.5;1;0.1")
    batches = list(data)
    assert data.samples == 2 and len(batches) == 2
    first = batches[0]["x"]
    assert first.shape == (1, 3, 4, 6) and first.dtype == np.float32
    np.testing.assert_allclose(first[0, :, 0, 0], [1.0, 0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(batches[1]["x"][0, :, 0, 0], [-1.0, 0.0, -1.0], atol=1e-5)


def test_bgr_order_and_nhwc_layout(tmp_path):
    _solid(tmp_path / "a.png", (255, 0, 0))
    (feed,) = open_data(tmp_path, _identity_model([1, 5, 5, 3]), preprocess="order=bgr")
    assert feed["x"].shape == (1, 5, 5, 3)
    np.testing.assert_allclose(feed["x"][0, 0, 0], [0.0, 0.0, 1.0], atol=1e-6)


def test_grey_images_for_one_channel_and_centre_crop(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (10, 0, 20, 10))  # white middle third
    image.save(tmp_path / "wide.png")
    model = resolve_model("zoo:digits")  # [N, 1, 32, 32], dynamic batch
    (cropped,) = open_data(tmp_path, model, preprocess="resize=crop")
    (stretched,) = open_data(tmp_path, model)
    assert cropped["input"].shape == (1, 1, 32, 32)
    assert cropped["input"].mean() > 0.9  # the crop keeps the white middle
    assert 0.2 < stretched["input"].mean() < 0.5


def test_preprocess_parsing():
    spec = Preprocess.parse("size=240x320,scale=1/128,mean=127;127;127,layout=nchw,resize=crop")
    assert spec.size == (240, 320) and spec.scale == pytest.approx(1 / 128)
    assert spec.mean == (127, 127, 127) and spec.resize == "crop"
    assert Preprocess.parse("size=224").size == (224, 224)


@pytest.mark.parametrize("text, message", [
    ("colour=rgb", "is not one of size"),
    ("size=big", "expected N or HxW"),
    ("scale=1/0", "not a number"),
    ("std=0;1;1", "must not be 0"),
    ("layout=chw", "expected nchw or nhwc"),
])
def test_bad_preprocess_is_one_line(text, message):
    with pytest.raises(GraphoptError, match=message):
        Preprocess.parse(text)


def test_folder_errors(tmp_path):
    model = _identity_model([1, 3, 8, 8])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GraphoptError, match="no images"):
        open_data(empty, model)
    broken = tmp_path / "broken"
    broken.mkdir()
    _solid(broken / "good.png", (1, 2, 3))
    (broken / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(GraphoptError, match=r"bad\.jpg: not a readable image"):
        open_data(broken, model)
    with pytest.raises(GraphoptError, match="single-input models"):
        open_data(broken, _identity_model([1, 3, 8, 8], inputs=("x", "z")))
    with pytest.raises(GraphoptError, match="does not fit input"):
        open_data(broken, model, preprocess="size=16")
    with pytest.raises(GraphoptError, match="2 values for 3 channels"):
        open_data(broken, model, preprocess="mean=0;0")
