"""Data sources: npz batches, random batches, and readable errors for wrong data."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.calibration import NpzData, RandomData
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
