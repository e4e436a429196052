"""The activation observer: stream intermediate tensors of a model into bounded statistics.

Every data-aware pass (quantization ranges, pruning importance, least-squares repair, low-rank
decisions) needs statistics of tensors inside the model over a data source. They all get them
here: an :class:`ActivationTap` exposes the chosen values as extra outputs of one onnxruntime
session (graph optimizations off, so every value exists as written), runs the source batch by
batch and hands each tensor to its observers, then drops it. Memory is that of one batch plus
the observers' state, whatever the number of samples.

Observers (each ``update(array)``, then read its fields):

- :class:`MinMax`: running min and max, per tensor or per channel;
- :class:`Histogram`: a bounded histogram (fixed bin count) whose range widens by merging bins,
  of the values or (``absolute=True``) of their magnitudes from 0, with the exact min and max;
- :class:`ChannelMoments`: count, mean and variance per channel (Chan et al.'s pairwise update,
  in float64, so batches combine exactly as one pass would);
- :class:`MeanMagnitude`: mean ``|x|`` per channel (how much a channel carries);
- :class:`Gram`: ``X^T X`` and column sums of a 2-D view of the tensor, the sums a least-squares
  fit needs.

Example::

    with ActivationTap(model, ["conv1_out"]) as tap:
        stats = ChannelMoments(axis=1)
        tap.stream(source, {"conv1_out": [stats]})
    stats.mean, stats.variance
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.errors import GraphoptError

__all__ = [
    "Observer",
    "MinMax",
    "Histogram",
    "ChannelMoments",
    "MeanMagnitude",
    "Gram",
    "ActivationTap",
    "observe",
]


class Observer(abc.ABC):
    """Accumulates statistics of one tensor, one batch at a time."""

    @abc.abstractmethod
    def update(self, array: np.ndarray) -> None:
        ...


def _reduce_axes(array: np.ndarray, axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(array.ndim))
    axis = axis % array.ndim
    return tuple(a for a in range(array.ndim) if a != axis)


class MinMax(Observer):
    """Running minimum and maximum (per channel along ``axis``, or of the whole tensor)."""

    def __init__(self, axis: int | None = None) -> None:
        self.axis = axis
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, array: np.ndarray) -> None:
        axes = _reduce_axes(array, self.axis)
        low = np.min(array, axis=axes).astype(np.float64)
        high = np.max(array, axis=axes).astype(np.float64)
        self.min = low if self.min is None else np.minimum(self.min, low)
        self.max = high if self.max is None else np.maximum(self.max, high)


class Histogram(Observer):
    """A histogram of ``bins`` bins over a range that widens as data arrives.

    The first batch sets the range; a later batch outside it widens the range to an integer
    multiple of the bin width and merges the old counts into the new bins. Memory is
    ``bins`` counters whatever the number of samples.
    """

    def __init__(self, bins: int = 2048, *, absolute: bool = False) -> None:
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.bins = bins
        self.absolute = absolute
        self.counts = np.zeros(bins, dtype=np.int64)
        self.low: float | None = None
        self.high: float | None = None
        self.min: float | None = None
        self.max: float | None = None
        self.total = 0

    @property
    def edges(self) -> np.ndarray:
        if self.low is None or self.high is None:
            raise ValueError("no data observed")
        return np.linspace(self.low, self.high, self.bins + 1)

    def update(self, array: np.ndarray) -> None:
        data = np.asarray(array, dtype=np.float64).ravel()
        data = data[np.isfinite(data)]
        if data.size == 0:
            return
        if self.absolute:
            data = np.abs(data)
        low, high = float(data.min()), float(data.max())
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)
        if self.absolute:
            low = 0.0  # magnitudes: the range always starts at zero
        if self.low is None or self.high is None:
            width = high - low
            self.low, self.high = (low, high) if width > 0 else (low - 0.5, high + 0.5)
            if self.absolute and width <= 0:
                self.low, self.high = 0.0, max(high, 1e-12)
        elif low < self.low or high > self.high:
            self._widen(low, high)
        counts, _ = np.histogram(data, bins=self.bins, range=(self.low, self.high))
        self.counts += counts
        self.total += data.size

    def _widen(self, low: float, high: float) -> None:
        """Widen to bins ``factor`` times as wide, starting a whole number of old bins lower,
        so that every old bin falls inside exactly one new bin."""
        assert self.low is not None and self.high is not None
        width = (self.high - self.low) / self.bins
        shift = int(np.ceil(max(0.0, self.low - low) / width))
        new_low = self.low - shift * width
        factor = max(1, int(np.ceil((max(self.high, high) - new_low) / (width * self.bins))))
        merged = np.zeros(self.bins, dtype=np.int64)
        np.add.at(merged, (shift + np.arange(self.bins)) // factor, self.counts)
        self.counts = merged
        self.low, self.high = new_low, new_low + factor * width * self.bins


class ChannelMoments(Observer):
    """Sample count, mean and (population) variance per channel along ``axis``."""

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis
        self.count = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, array: np.ndarray) -> None:
        axes = _reduce_axes(array, self.axis)
        data = np.asarray(array, dtype=np.float64)
        count = int(np.prod([array.shape[a] for a in axes])) if axes else 1
        mean = data.mean(axis=axes)
        m2 = ((data - np.expand_dims(mean, axes)) ** 2).sum(axis=axes)
        if self.mean is None or self._m2 is None:
            self.count, self.mean, self._m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        if self._m2 is None:
            raise ValueError("no data observed")
        return self._m2 / self.count


class MeanMagnitude(Observer):
    """Mean of ``|x|`` per channel along ``axis`` (float64, exact across batches)."""

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis
        self.count = 0
        self.sums: np.ndarray | None = None

    def update(self, array: np.ndarray) -> None:
        axes = _reduce_axes(array, self.axis)
        sums = np.abs(np.asarray(array, dtype=np.float64)).sum(axis=axes)
        self.sums = sums if self.sums is None else self.sums + sums
        self.count += int(np.prod([array.shape[a] for a in axes])) if axes else 1

    @property
    def mean(self) -> np.ndarray:
        if self.sums is None:
            raise ValueError("no data observed")
        return self.sums / self.count


class Gram(Observer):
    """Sums for least squares over rows of a 2-D view: ``X^T X``, column sums and row count.

    ``to_rows(array) -> [rows, features]`` says what a row is (for a Conv input, one spatial
    position's channels; the default moves axis 1 last and flattens the rest).
    """

    def __init__(self, to_rows: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.to_rows = to_rows or _channels_last_rows
        self.xtx: np.ndarray | None = None
        self.column_sums: np.ndarray | None = None
        self.rows = 0

    def update(self, array: np.ndarray) -> None:
        rows = np.asarray(self.to_rows(array), dtype=np.float64)
        xtx, sums = rows.T @ rows, rows.sum(axis=0)
        if self.xtx is None or self.column_sums is None:
            self.xtx, self.column_sums = xtx, sums
        else:
            self.xtx += xtx
            self.column_sums += sums
        self.rows += rows.shape[0]


def _channels_last_rows(array: np.ndarray) -> np.ndarray:
    if array.ndim < 2:
        return array.reshape(-1, 1)
    moved = np.moveaxis(array, 1, -1)
    return moved.reshape(-1, moved.shape[-1])


def _values_by_name(model: ir.Model) -> dict[str, ir.Value]:
    values = {v.name: v for v in model.graph.inputs if v.name}
    for node in model.graph:
        for value in node.outputs:
            if value.name:
                values[value.name] = value
    return values


class ActivationTap:
    """One onnxruntime session of ``model`` that also outputs the values named ``names``.

    The values are added as graph outputs only while the session is built; the model is left
    as it was. Graph inputs can be tapped too (their feeds are passed through).
    """

    def __init__(self, model: ir.Model, names: Sequence[str]) -> None:
        values = _values_by_name(model)
        unknown = [n for n in names if n not in values]
        if unknown:
            raise GraphoptError(f"cannot observe {unknown}: no such values in the model")
        self.names = list(dict.fromkeys(names))
        self._inputs = {v.name for v in model.graph.inputs}
        tapped = [values[n] for n in self.names if n not in self._inputs]
        with _exposed(model, tapped):
            self._session = oracle.make_session(model)
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, feed: Mapping[str, np.ndarray],
            names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The tapped values (all, or ``names``) for one feed."""
        wanted = list(names) if names is not None else self.names
        fetch = [n for n in wanted if n not in self._inputs]
        values = dict(zip(fetch, self._session.run(fetch, dict(feed)), strict=True))
        for name in wanted:
            if name in self._inputs:
                values[name] = feed[name]
        return values

    def stream(self, source: Iterable[Mapping[str, np.ndarray]],
               observers: Mapping[str, Sequence[Observer]],
               progress: Callable[[int, int], None] | None = None) -> int:
        """Run every batch of ``source`` and update each tensor's observers; returns the
        number of batches. Only one batch's tensors are alive at a time. ``progress`` gets
        ``(batches done, batches in all)`` after each batch (0 in all for a source without
        ``len``)."""
        names = list(observers)
        total = len(source) if isinstance(source, Sized) else 0
        batches = 0
        for feed in source:
            values = self.run(feed, names)
            for name, array in values.items():
                for observer in observers[name]:
                    observer.update(array)
            del values
            batches += 1
            if progress is not None:
                progress(batches, total)
        return batches

    def close(self) -> None:
        self._session = None

    def __enter__(self) -> ActivationTap:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def _exposed(model: ir.Model, values: Sequence[ir.Value]) -> Iterator[None]:
    """Temporarily list ``values`` as graph outputs."""
    added = [v for v in values if not v.is_graph_output()]
    model.graph.outputs.extend(added)
    try:
        yield
    finally:
        for value in added:
            model.graph.outputs.remove(value)


def observe(model: ir.Model, source: Iterable[Mapping[str, np.ndarray]],
            observers: Mapping[str, Sequence[Observer]]) -> int:
    """Stream ``source`` through ``model`` into ``observers`` (value name -> observers)."""
    with ActivationTap(model, list(observers)) as tap:
        return tap.stream(source, observers)
