"""Data sources: npz batches with labels, digits splits, held-out splits, random batches, and
readable errors for wrong data."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt import zoo
from graphopt.calibration import NpzData, RandomData, open_data, split_holdout
from graphopt.errors import GraphoptError
from graphopt.model_io import resolve_model


def test_npz_batches(tmp_path):
    model = resolve_model("zoo:mlp")
    path = tmp_path / "d.npz"
    np.savez(path, input=np.arange(5 * 256, dtype=np.float32).reshape(5, 256))
    source = NpzData(model, path, batch_size=2)
    batches = list(source)
    assert len(source) == 3 and [b["input"].shape[0] for b in batches] == [2, 2, 1]


def test_npz_mismatched_counts(tmp_path):
    model = resolve_model("zoo:mlp")
    path = tmp_path / "d.npz"
    np.savez(path, input=np.ones((2, 256), np.float32), other=np.ones((3, 1), np.float32))
    with pytest.raises(GraphoptError, match="different sample counts"):
        NpzData(model, path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("nope")
    with pytest.raises(GraphoptError, match="not a readable .npz"):
        NpzData(resolve_model("zoo:mlp"), path)


def test_random_batches_are_seeded():
    model = resolve_model("zoo:tiny_cnn")
    first = [b["input"] for b in RandomData(model, batches=2, batch_size=3)]
    second = [b["input"] for b in RandomData(model, batches=2, batch_size=3)]
    assert first[0].shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])


def test_npz_labels_are_not_fed(tmp_path):
    model = resolve_model("zoo:mlp")
    path = tmp_path / "d.npz"
    np.savez(path, input=np.ones((5, 256), np.float32), labels=np.arange(5))
    source = NpzData(model, path, batch_size=2)
    assert all(set(b) == {"input"} for b in source)
    np.testing.assert_array_equal(source.labels, np.arange(5))


def test_npz_float_labels_are_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, input=np.ones((5, 256), np.float32), labels=np.ones(5))
    with pytest.raises(GraphoptError, match="labels must be one integer class id"):
        NpzData(resolve_model("zoo:mlp"), path)


def test_holdout_is_disjoint_and_seeded():
    model = resolve_model("zoo:digits")
    data = open_data("zoo:digits", model)
    calibration, held = split_holdout(data, seed=3)
    assert data.samples == 200 and held.samples == 32 and calibration.samples == 168
    assert not set(calibration.indices) & set(held.indices)
    again_calibration, again_held = split_holdout(data, seed=3)
    np.testing.assert_array_equal(held.indices, again_held.indices)
    first_batch = next(iter(held))["input"]
    x, y = zoo.digits_calibration_data()
    np.testing.assert_array_equal(first_batch, x[held.indices[: len(first_batch)]])
    np.testing.assert_array_equal(held.labels, y[held.indices])


def test_digits_calibration_split_is_not_the_test_split():
    calib, _ = zoo.digits_calibration_data()
    test, _ = zoo.digits_test_data()
    flat_test = {row.tobytes() for row in test.reshape(len(test), -1)}
    assert not any(row.tobytes() in flat_test for row in calib.reshape(len(calib), -1))


def test_one_sample_cannot_be_split(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, input=np.ones((1, 256), np.float32))
    with pytest.raises(GraphoptError, match="1 sample cannot be split"):
        split_holdout(open_data(path, resolve_model("zoo:mlp")))


@pytest.mark.parametrize("spec, message", [
    ("missing.npz", "no such data file or folder"),
    ("data.txt", "expected an .npz file, a folder of images"),
])
def test_open_data_errors(tmp_path, spec, message):
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(GraphoptError, match=message):
        open_data(tmp_path / spec, resolve_model("zoo:mlp"))


def test_digits_data_feeds_only_single_input_models():
    with pytest.raises(GraphoptError, match="size 1 on axis 1"):
        open_data("zoo:digits", resolve_model("zoo:tiny_cnn"))
