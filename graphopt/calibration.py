"""Model input data: batches for verification, calibration and evaluation, checked against
the model.

A data source is an iterable of feeds (``{input_name: array}``), streamed batch by batch so
that calibrating on many samples never holds them all. Sample sources (:class:`SampleData`)
address their samples by index, so they can be split (calibration vs held-out verification)
and may carry labels for task accuracy:

- :class:`NpzData`: an ``.npz`` file, one array per input with a leading sample axis, and an
  optional ``labels`` array (class ids, one per sample);
- :class:`ArrayData`: arrays in memory (``zoo:digits``' calibration and test splits);
- :class:`~graphopt.images.ImageFolderData`: a folder of images and a preprocessing spec;
- :class:`RandomData`: seeded random feeds, for models without data (always labelled so).

:func:`open_data` turns what a user writes (``calib.npz``, ``photos/``, ``zoo:digits``) into a
source. Every source checks its first feed against the model's inputs at construction, so a
wrong name, dtype, rank or size is one readable ``GraphoptError`` before any pass runs. An
``.npz`` is checked from its array headers before anything is decompressed (a small zip can
expand to gigabytes), and what it expands to is capped at :data:`MAX_NPZ_BYTES`.
"""

from __future__ import annotations

import abc
import copy
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt.errors import GraphoptError
from graphopt.feeds import check_feed, model_inputs, random_inputs, static_batch_size

__all__ = [
    "LABELS_KEY",
    "DEFAULT_BATCH_SIZE",
    "DataSource",
    "SampleData",
    "ArrayData",
    "NpzData",
    "RandomData",
    "check_feed",
    "model_inputs",
    "load_npz",
    "npz_headers",
    "MAX_NPZ_BYTES",
    "open_data",
    "split_holdout",
    "default_batch_size",
]

LABELS_KEY = "labels"
MAX_NPZ_BYTES = 2 << 30
"""The most an ``.npz`` may expand to (2 GiB of arrays): larger data sets are refused."""
DEFAULT_BATCH_SIZE = 8
"""Samples per batch for models with a dynamic batch axis (fixed-batch models get theirs)."""
_DIGITS = "zoo:digits"
_DIGITS_TEST = "zoo:digits:test"


def default_batch_size(model: ir.Model) -> int:
    """The model's fixed batch size, or :data:`DEFAULT_BATCH_SIZE` for a dynamic batch."""
    return static_batch_size(model) or DEFAULT_BATCH_SIZE


def _check_npz_path(path: Path) -> None:
    if not path.exists():
        raise GraphoptError(f"{path}: no such input data file")
    if path.is_dir():
        raise GraphoptError(f"{path}: is a folder, expected an .npz file")


def npz_headers(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of every array in an ``.npz``, read from the ``.npy``
    headers alone (a few hundred bytes each): nothing else is decompressed."""
    path = Path(path)
    _check_npz_path(path)
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise GraphoptError(f"{path}: {info.filename!r} is not an array (.npy)")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise GraphoptError(f"{path}: {info.filename!r} has .npy format"
                                            f" {version[0]}.{version[1]}, expected 1.0 or 2.0")
                if dtype.hasobject:
                    raise GraphoptError(f"{path}: {info.filename!r} holds Python objects;"
                                        " graphopt reads numeric arrays only")
                headers[info.filename[:-len(".npy")]] = (tuple(shape), dtype)
    except GraphoptError:
        raise
    except Exception as exc:  # BadZipFile, ValueError from a broken header, OSError ...
        raise GraphoptError(f"{path}: not a readable .npz file ({exc})") from exc
    return headers


def _npz_bytes(headers: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    total = 0
    for shape, dtype in headers.values():
        count = 1
        for dim in shape:
            count *= dim
        total += count * dtype.itemsize
    return total


def load_npz(path: Path, *, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, with a readable error when it is not one or would expand
    to more than ``max_bytes``."""
    path = Path(path)
    headers = npz_headers(path)
    size = _npz_bytes(headers)
    if size > max_bytes:
        raise GraphoptError(f"{path}: its arrays expand to {size / 2**30:.3g} GiB, more than"
                            f" the {max_bytes / 2**30:g} GiB graphopt reads from an .npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:
        raise GraphoptError(f"{path}: not a readable .npz file ({exc})") from exc


def _check_npz_headers(model: ir.Model, headers: Mapping[str, tuple], where: str) -> None:
    """Names, dtypes, ranks and per-sample sizes of an .npz against the model's inputs,
    before its arrays are read (the leading axis is the sample axis)."""
    counts = {name: shape[0] if shape else 0 for name, (shape, _) in headers.items()}
    if len(set(counts.values())) > 1:
        raise GraphoptError(f"{where}: arrays have different sample counts {counts}")
    expected = {v.name: v for v in model_inputs(model)}
    arrays = {k: v for k, v in headers.items() if k != LABELS_KEY}
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise GraphoptError(f"{where} does not match the model: missing {missing}, unexpected"
                            f" {extra} (model inputs: {sorted(expected)})")
    for name, (shape, dtype) in arrays.items():
        value = expected[name]
        if value.dtype is not None and dtype != value.dtype.numpy():
            raise GraphoptError(f"{where}: input {name!r} has dtype {dtype}, the model expects"
                                f" {value.dtype.numpy()}")
        if value.shape is None:
            continue
        if len(shape) != len(value.shape):
            raise GraphoptError(f"{where}: input {name!r} has shape {list(shape)}, the model"
                                f" expects rank {len(value.shape)}")
        for axis, (dim, size) in enumerate(zip(value.shape, shape, strict=True)):
            if axis > 0 and isinstance(dim, int) and dim != size:
                raise GraphoptError(f"{where}: input {name!r} has size {size} on axis {axis},"
                                    f" the model expects {dim}")
    if LABELS_KEY in headers:
        shape, dtype = headers[LABELS_KEY]
        if len(shape) != 1 or not np.issubdtype(dtype, np.integer):
            raise GraphoptError(f"{where}: labels must be one integer class id per sample,"
                                f" got {dtype} {list(shape)}")


class DataSource(abc.ABC):
    """An iterable of feeds for one model; ``len()`` is the number of batches.

    ``description`` says where the data came from (shown in reports); ``labels`` holds one
    class id per sample in iteration order, or ``None``.
    """

    description: str = "data"
    labels: np.ndarray | None = None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        ...


class SampleData(DataSource):
    """Samples addressable by index, served in batches of ``batch_size``.

    Subclasses implement ``_sample_count`` and ``_load(indices)``; ``indices`` selects and
    orders the samples this source serves (all of them by default).
    """

    def __init__(self, model: ir.Model, *, batch_size: int | None = None,
                 indices: np.ndarray | None = None, description: str = "data") -> None:
        self.model = model
        self.batch_size = batch_size or default_batch_size(model)
        if self.batch_size < 1:
            raise GraphoptError(f"batch size must be >= 1, got {self.batch_size}")
        self.description = description
        self._indices = indices

    @abc.abstractmethod
    def _sample_count(self) -> int:
        ...

    @abc.abstractmethod
    def _load(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        ...

    def _all_labels(self) -> np.ndarray | None:
        return None

    @property
    def indices(self) -> np.ndarray:
        if self._indices is None:
            return np.arange(self._sample_count())
        return self._indices

    @property
    def samples(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray | None:  # type: ignore[override]
        labels = self._all_labels()
        return None if labels is None else labels[self.indices]

    def subset(self, indices: np.ndarray, *, description: str | None = None) -> SampleData:
        """The same data restricted to ``indices`` (positions in this source's order)."""
        view = copy.copy(self)
        view._indices = self.indices[np.asarray(indices, dtype=np.int64)]
        view.description = description or self.description
        return view

    def _check_first(self) -> None:
        if self.samples == 0:
            raise GraphoptError(f"{self.description}: no samples")
        check_feed(self.model, self._load(self.indices[: self.batch_size]),
                   where=self.description)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        order = self.indices
        for start in range(0, len(order), self.batch_size):
            yield self._load(order[start:start + self.batch_size])

    def __len__(self) -> int:
        return -(-self.samples // self.batch_size)


class ArrayData(SampleData):
    """Samples held in arrays (axis 0 is the sample axis), with optional labels."""

    def __init__(self, model: ir.Model, arrays: Mapping[str, np.ndarray], *,
                 labels: np.ndarray | None = None, batch_size: int | None = None,
                 description: str = "arrays") -> None:
        super().__init__(model, batch_size=batch_size, description=description)
        self._arrays = dict(arrays)
        counts = {name: len(array) if np.ndim(array) else 0
                  for name, array in self._arrays.items()}
        if labels is not None:
            labels = _checked_labels(labels, description)
            counts[LABELS_KEY] = len(labels)
        if len(set(counts.values())) > 1:
            raise GraphoptError(f"{description}: arrays have different sample counts {counts}")
        self._labels = labels
        self._count = next(iter(counts.values()), 0)
        self._check_first()

    def _sample_count(self) -> int:
        return self._count

    def _load(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        if len(indices) and np.all(np.diff(indices) == 1):  # a contiguous run: a view
            start, stop = int(indices[0]), int(indices[-1]) + 1
            return {name: array[start:stop] for name, array in self._arrays.items()}
        return {name: array[indices] for name, array in self._arrays.items()}

    def _all_labels(self) -> np.ndarray | None:
        return self._labels


class NpzData(ArrayData):
    """An .npz file: one array per model input, plus optional ``labels`` (class ids)."""

    def __init__(self, model: ir.Model, path: Path | str, batch_size: int | None = None) -> None:
        self.path = Path(path)
        _check_npz_headers(model, npz_headers(self.path), str(self.path))
        arrays = load_npz(self.path)
        labels = arrays.pop(LABELS_KEY, None)
        if not arrays:
            raise GraphoptError(f"{self.path}: no input arrays")
        super().__init__(model, arrays, labels=labels, batch_size=batch_size,
                         description=str(self.path))


def _checked_labels(labels: np.ndarray, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise GraphoptError(
            f"{where}: labels must be one integer class id per sample, got {labels.dtype}"
            f" {list(labels.shape)}"
        )
    return labels.astype(np.int64)


class RandomData(DataSource):
    """``batches`` seeded random feeds (see :func:`graphopt.feeds.random_inputs`)."""

    def __init__(self, model: ir.Model, batches: int = 8, batch_size: int = 1,
                 seed: int = 0) -> None:
        self.model = model
        self.batches = batches
        self.batch_size = batch_size
        self.seed = seed
        self.description = f"random inputs (seed {seed}, {batches * batch_size} samples)"

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for index in range(self.batches):
            yield random_inputs(self.model, seed=self.seed + index, batch_size=self.batch_size)

    def __len__(self) -> int:
        return self.batches


def _digits(model: ir.Model, split: str, batch_size: int | None) -> ArrayData:
    from graphopt import zoo

    x, y = zoo.digits_calibration_data() if split == "calibration" else zoo.digits_test_data()
    name = _DIGITS if split == "calibration" else _DIGITS_TEST
    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise GraphoptError(f"{name}: the digits images feed single-input models, this model"
                            f" has inputs {[v.name for v in inputs]}")
    return ArrayData(model, {inputs[0].name: x}, labels=y, batch_size=batch_size,
                     description=f"{name} ({split} split, {len(y)} labelled images)")


def open_data(spec: str | os.PathLike, model: ir.Model, *, preprocess: str | None = None,
              batch_size: int | None = None) -> SampleData:
    """The data source a user names: an ``.npz``, a folder of images (with ``preprocess``),
    ``zoo:digits`` (the digits calibration split) or ``zoo:digits:test`` (its test split)."""
    text = os.fspath(spec)
    if text in (_DIGITS, _DIGITS_TEST):
        if preprocess:
            raise GraphoptError(f"--preprocess applies to image folders, not {text}")
        return _digits(model, "calibration" if text == _DIGITS else "test", batch_size)
    path = Path(text)
    if path.is_dir():
        from graphopt.images import ImageFolderData

        return ImageFolderData(model, path, preprocess=preprocess, batch_size=batch_size)
    if preprocess:
        raise GraphoptError(f"--preprocess applies to image folders, not {text}")
    if not path.exists():
        raise GraphoptError(f"{text}: no such data file or folder")
    if path.suffix.lower() == ".npy":
        return _npy_data(model, path, batch_size)
    if path.suffix.lower() != ".npz":
        raise GraphoptError(f"{text}: expected an .npz file, a folder of images, an .npy"
                            f" (single-input models), {_DIGITS} or {_DIGITS_TEST}")
    return NpzData(model, path, batch_size=batch_size)


def _npy_data(model: ir.Model, path: Path, batch_size: int | None) -> ArrayData:
    """One ``.npy`` array (leading sample axis) as the data of a single-input model."""
    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise GraphoptError(f"{path}: an .npy holds one array and this model has inputs"
                            f" {[v.name for v in inputs]}; give an .npz, one array per input")
    try:
        with open(path, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise GraphoptError(f"{path}: not an .npy file (no NumPy array header)")
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except GraphoptError:
        raise
    except ValueError as exc:  # object arrays need pickle, which graphopt never enables
        raise GraphoptError(f"{path}: holds Python objects or a broken header; graphopt reads"
                            " numeric arrays only") from exc
    except OSError as exc:
        raise GraphoptError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if array.nbytes > MAX_NPZ_BYTES:
        raise GraphoptError(f"{path}: {array.nbytes / 2**30:.3g} GiB, more than the"
                            f" {MAX_NPZ_BYTES / 2**30:g} GiB graphopt reads from an .npy")
    return ArrayData(model, {inputs[0].name: np.array(array)}, batch_size=batch_size,
                     description=f"{path} ({len(array) if array.ndim else 0} samples)")


def split_holdout(data: SampleData, *, fraction: float = 0.25, max_holdout: int = 32,
                  seed: int = 0) -> tuple[SampleData, SampleData]:
    """(calibration, held-out) parts of ``data``, disjoint, chosen by a seeded permutation.

    The held-out part gets ``fraction`` of the samples (at least one, at most
    ``max_holdout``) so that fidelity is measured on samples the calibration never saw.
    """
    count = data.samples
    if count < 2:
        raise GraphoptError(
            f"{data.description}: {count} sample cannot be split into calibration and held-out"
            " data; give more samples or verification data with --inputs"
        )
    held = min(max(1, round(count * fraction)), max_holdout, count - 1)
    order = np.random.default_rng(seed).permutation(count)
    held_out, calibration = np.sort(order[:held]), np.sort(order[held:])
    return (
        data.subset(calibration, description=f"{data.description}, calibration part"
                                              f" ({len(calibration)} samples)"),
        data.subset(held_out, description=f"{data.description}, held-out part"
                                          f" ({len(held_out)} samples)"),
    )
