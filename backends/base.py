"""The Runner interface every backend implements (after Polygraphy's runner template).

A runner is a context manager::

    with OrtRunner("model.onnx", threads=2) as runner:
        outputs = runner.infer({"input": x})

The public methods guard the state and time the expensive step; subclasses implement
``_activate_impl`` (create the session or compile the model), ``_infer_impl`` and
``_deactivate_impl``. After activation a runner reports:

- ``precision``: the arithmetic it actually runs (``fp32``, ``bf16``, ``fp16``, ``int8``), read
  back from the runtime where the runtime can say (OpenVINO) and otherwise derived from what
  was requested and what the graph holds; a quantized graph run as it is reports the graph's
  own name (``mixed``, ``int8-weights``, ``int4-weights``, see :func:`graph_precision`);
- ``settings``: everything that affects speed (providers, threads, streams, hints, versions);
- ``compile_seconds``: session creation / compile time, measured apart from inference (and
  apart from the runner's own bookkeeping when it wraps the step in ``self._compiling()``).

Concurrent throughput uses ``submit(feed)`` / ``wait_all()``. The default runs ``infer`` on a
bounded thread pool (right for runtimes whose ``run`` releases the GIL and is thread-safe);
runners with a native asynchronous API (OpenVINO's ``AsyncInferQueue``) override it, and those
with neither set ``supports_async = False``.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from graphopt.precision import model_precision

__all__ = [
    "PRECISIONS",
    "RunnerStateError",
    "TensorMeta",
    "ModelSource",
    "ModelLoader",
    "Runner",
    "canonical_precision",
    "graph_precision",
]

logger = logging.getLogger(__name__)

# Canonical names of the precisions a runner can be asked for; aliases accepted on input.
# graph_precision may also return the names of graphopt.precision.GRAPH_PRECISIONS.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_PRECISION_ALIASES = {
    "fp32": "fp32", "f32": "fp32", "float32": "fp32", "float": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "f16": "fp16", "float16": "fp16", "half": "fp16",
    "int8": "int8", "i8": "int8", "u8": "int8", "uint8": "int8",
}
DEFAULT_ASYNC_WORKERS = 2

ModelSource = str | os.PathLike | Callable[[], "str | os.PathLike"]


class RunnerStateError(RuntimeError):
    """A runner was used out of order (``infer`` before ``activate``, activated twice)."""


@dataclasses.dataclass(frozen=True)
class TensorMeta:
    """An input or output: numpy dtype and shape (``None`` or a name for a dynamic dim)."""

    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    def to_dict(self) -> dict:
        return {"dtype": str(self.dtype), "shape": list(self.shape)}


def canonical_precision(text: str) -> str:
    """``f32``/``float32`` -> ``fp32`` and so on; ``ValueError`` for an unknown name."""
    key = text.strip().lower()
    if key not in _PRECISION_ALIASES:
        raise ValueError(f"unknown precision {text!r} (known: {', '.join(PRECISIONS)})")
    return _PRECISION_ALIASES[key]


def graph_precision(path: str | os.PathLike) -> str:
    """The precision a graph computes in by itself (:func:`graphopt.precision.model_precision`):
    ``int8`` (every MAC node on int8 QDQ or integer operators), ``mixed`` (some int8, some
    float), ``int8-weights`` / ``int4-weights`` (quantized weights, float activations), else
    ``fp32``, ``fp16``, ``bf16`` (``fp64``). External data is never read."""
    return model_precision(ir.load(os.fspath(path)))


class ModelLoader:
    """Lazily yields the model file: a path, or a callable returning one (called once)."""

    def __init__(self, source: ModelSource) -> None:
        self._source = source
        self._path: Path | None = None

    def __call__(self) -> Path:
        if self._path is None:
            value = self._source() if callable(self._source) else self._source
            path = Path(os.fspath(value))
            if not path.is_file():
                raise FileNotFoundError(f"model file {path} does not exist")
            self._path = path
        return self._path


class Runner(abc.ABC):
    """Base class of all runners: state guards, compile timing, metadata, async fallback."""

    #: Whether ``submit``/``wait_all`` can run requests concurrently.
    supports_async: bool = True

    def __init__(self, model: ModelSource, *, name: str, async_workers: int | None = None) -> None:
        self.name = name
        self.load_model = ModelLoader(model)
        self.precision = "unknown"
        self.settings: dict[str, Any] = {}
        self.compile_seconds: float | None = None
        self.is_active = False
        self.async_workers = async_workers or DEFAULT_ASYNC_WORKERS
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future] = []
        self._completed = 0
        self._input_names: frozenset[str] = frozenset()
        self._slots: threading.BoundedSemaphore | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def activate(self) -> None:
        """Create the session / compile the model; ``compile_seconds`` records how long."""
        if self.is_active:
            raise RunnerStateError(f"{self.name}: runner is already active")
        self.compile_seconds = None
        start = time.perf_counter()
        try:
            self._activate_impl()
        except BaseException:
            self._deactivate_impl()  # release whatever was created before the failure
            raise
        if self.compile_seconds is None:  # the runner did not time its compile step itself
            self.compile_seconds = time.perf_counter() - start
        self.is_active = True
        self._input_names = frozenset(self._input_metadata_impl())
        logger.debug("%s: activated in %.3f s (%s)", self.name, self.compile_seconds,
                     self.precision)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference; outputs by name."""
        self._require_active("infer")
        missing = self._input_names.difference(feed)
        if missing:
            raise ValueError(f"{self.name}: feed lacks inputs {sorted(missing)}")
        return self._infer_impl(feed)

    def deactivate(self) -> None:
        """Release the session and any pending requests; calling it again does nothing."""
        if not self.is_active:
            return
        try:
            self._shutdown_async()
            self._deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    @contextlib.contextmanager
    def _compiling(self) -> Iterator[None]:
        """Time the session creation / compilation inside ``_activate_impl`` as
        ``compile_seconds`` (otherwise the whole activation is timed)."""
        start = time.perf_counter()
        yield
        self.compile_seconds = time.perf_counter() - start

    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise RunnerStateError(f"{self.name}: {what}() called before activate()")

    # -- metadata --------------------------------------------------------------------------

    def input_metadata(self) -> dict[str, TensorMeta]:
        self._require_active("input_metadata")
        return self._input_metadata_impl()

    def output_metadata(self) -> dict[str, TensorMeta]:
        self._require_active("output_metadata")
        return self._output_metadata_impl()

    # -- concurrent requests ---------------------------------------------------------------

    def submit(self, feed: Mapping[str, np.ndarray]) -> None:
        """Start one inference without waiting; blocks while every worker is busy."""
        self._require_active("submit")
        if not self.supports_async:
            raise NotImplementedError(f"{self.name}: concurrent requests are not supported")
        self._submit_impl(feed)

    def wait_all(self) -> int:
        """Wait for every submitted inference; returns how many completed since the last wait."""
        self._require_active("wait_all")
        if not self.supports_async:
            raise NotImplementedError(f"{self.name}: concurrent requests are not supported")
        return self._wait_all_impl()

    def _submit_impl(self, feed: Mapping[str, np.ndarray]) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.async_workers, thread_name_prefix=f"{self.name}-req"
            )
            # Twice the workers in flight keeps every worker busy without an unbounded queue.
            self._slots = threading.BoundedSemaphore(2 * self.async_workers)
        slots = self._slots
        assert slots is not None
        slots.acquire()
        future = self._pool.submit(self._infer_discard, feed)
        future.add_done_callback(lambda _: slots.release())
        self._pending.append(future)
        if len(self._pending) > 8 * self.async_workers:
            self._collect(block=False)

    def _infer_discard(self, feed: Mapping[str, np.ndarray]) -> None:
        self._infer_impl(feed)

    def _collect(self, *, block: bool) -> None:
        """Move finished requests into the completed count (re-raising their errors)."""
        still_running = []
        for future in self._pending:
            if block or future.done():
                future.result()
                self._completed += 1
            else:
                still_running.append(future)
        self._pending = still_running

    def _wait_all_impl(self) -> int:
        self._collect(block=True)
        completed, self._completed = self._completed, 0
        return completed

    def _shutdown_async(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pending = []
            self._completed = 0

    # -- to implement ----------------------------------------------------------------------

    @abc.abstractmethod
    def _activate_impl(self) -> None:
        """Load the model, build the session; set ``precision`` and ``settings``."""

    @abc.abstractmethod
    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous inference."""

    @abc.abstractmethod
    def _deactivate_impl(self) -> None:
        """Release the session."""

    @abc.abstractmethod
    def _input_metadata_impl(self) -> dict[str, TensorMeta]: ...

    @abc.abstractmethod
    def _output_metadata_impl(self) -> dict[str, TensorMeta]: ...
