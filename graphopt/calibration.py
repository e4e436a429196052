"""Model input data: batches for verification and calibration, checked against the model.

A data source is an iterable of feeds (``{input_name: array}``), streamed batch by batch so
that calibrating on many samples never holds them all. Sources: an ``.npz`` file (one array per
input, split along axis 0 into batches), seeded random inputs, or the digits test split.
Every feed is checked against the model's inputs (names, dtype, rank, static dims) and a
mismatch is one readable ``GraphoptError``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt.errors import GraphoptError
from graphopt.verify import random_inputs

__all__ = ["DataSource", "NpzData", "RandomData", "check_feed", "load_npz", "model_inputs"]


def model_inputs(model: ir.Model) -> list[ir.Value]:
    """The graph inputs that are data (not initializers listed as inputs)."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


def check_feed(
    model: ir.Model, feed: Mapping[str, np.ndarray], *, where: str = "input data"
) -> None:
    """Raise a one-line error when ``feed`` does not fit the model's inputs."""
    expected = {v.name: v for v in model_inputs(model)}
    missing = sorted(set(expected) - set(feed))
    extra = sorted(set(feed) - set(expected))
    if missing or extra:
        raise GraphoptError(
            f"{where} does not match the model: missing {missing}, unexpected {extra}"
            f" (model inputs: {sorted(expected)})"
        )
    for name, value in expected.items():
        array = feed[name]
        if value.dtype is not None and array.dtype != value.dtype.numpy():
            raise GraphoptError(
                f"{where}: input {name!r} has dtype {array.dtype}, the model expects"
                f" {value.dtype.numpy()}"
            )
        if value.shape is None:
            continue
        if array.ndim != len(value.shape):
            raise GraphoptError(
                f"{where}: input {name!r} has shape {array.shape}, the model expects rank"
                f" {len(value.shape)} {list(value.shape)}"
            )
        for axis, (dim, size) in enumerate(zip(value.shape, array.shape, strict=True)):
            if isinstance(dim, int) and dim != size:
                raise GraphoptError(
                    f"{where}: input {name!r} has size {size} on axis {axis}, the model expects"
                    f" {dim} (shape {list(value.shape)})"
                )


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, with a readable error when it is not one."""
    path = Path(path)
    if not path.exists():
        raise GraphoptError(f"{path}: no such input data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:
        raise GraphoptError(f"{path}: not a readable .npz file ({exc})") from exc


class DataSource(abc.ABC):
    """An iterable of feeds for one model; ``len()`` is the number of batches."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        ...


@dataclasses.dataclass
class NpzData(DataSource):
    """Batches of ``batch_size`` samples from an .npz file (axis 0 is the sample axis)."""

    model: ir.Model
    path: Path
    batch_size: int = 1

    def __post_init__(self) -> None:
        self._arrays = load_npz(self.path)
        counts = {name: len(array) for name, array in self._arrays.items()}
        if len(set(counts.values())) > 1:
            raise GraphoptError(f"{self.path}: arrays have different sample counts {counts}")
        self._samples = next(iter(counts.values()), 0)
        if self._samples == 0:
            raise GraphoptError(f"{self.path}: no samples")
        check_feed(self.model, self._batch(0), where=str(self.path))

    def _batch(self, start: int) -> dict[str, np.ndarray]:
        stop = start + self.batch_size
        return {name: array[start:stop] for name, array in self._arrays.items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self._samples, self.batch_size):
            yield self._batch(start)

    def __len__(self) -> int:
        return -(-self._samples // self.batch_size)


@dataclasses.dataclass
class RandomData(DataSource):
    """``batches`` seeded random feeds (see ``graphopt.verify.random_inputs``)."""

    model: ir.Model
    batches: int = 8
    batch_size: int = 1
    seed: int = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for index in range(self.batches):
            yield random_inputs(self.model, seed=self.seed + index, batch_size=self.batch_size)

    def __len__(self) -> int:
        return self.batches
