"""Native TensorRT runner: ONNX -> engine (cached) -> execution context on a CUDA stream.

Build (TensorRT 10/11 Python API): ``Builder`` -> ``NetworkDefinition`` (strongly typed where
the flag exists) -> ``OnnxParser`` -> ``BuilderConfig`` (workspace pool limit, precision flags,
one ``IOptimizationProfile`` when inputs have dynamic dims) -> ``build_serialized_network``.
Run: ``Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per inference
``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3(stream)``; CUDA events
around the enqueue give the device time of the last inference (``last_device_ms``).

Precision. TensorRT 10 deprecated and TensorRT 11 removed the FP16/BF16/INT8 builder flags in
favour of strongly typed networks, where precision comes from the graph (fp16 casts, Q/DQ
nodes). :func:`select_precision_mode` decides: no requested precision -> strongly typed, the
graph's own precision; a requested precision the graph already holds -> strongly typed; a
lower precision than the graph holds -> the builder flag when this TensorRT has it (weakly
typed network), otherwise a one-line error asking for a converted graph. Quantized graphs
(``int8``, ``mixed``, ``int8-weights``, ``int4-weights``: explicit quantization with Q/DQ
nodes) run strongly typed as they are and are never lowered or raised. TF32 is switched off
so that ``fp32`` means fp32.

Engines are cached under ``<cache>/tensorrt/<key>.engine`` with ``key`` = sha256 over the model
bytes, the TensorRT version, the device name and every builder setting that changes the engine.
CUDA comes from cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``) or pycuda,
whichever imports. Everything is imported lazily; :func:`tensorrt_available` says why not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from graphopt import atomic
from graphopt.backends.base import ModelSource, Runner, TensorMeta, graph_precision
from graphopt.precision import QUANTIZED_PRECISIONS

__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "PrecisionMode",
    "TensorRtRunner",
    "tensorrt_available",
    "select_precision_mode",
    "profile_shapes",
    "engine_cache_key",
    "engine_cache_dir",
    "engine_cache_path",
]

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
_CACHE_FORMAT = 1
_PRECISION_FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}
# The flag a weakly typed network needs to keep a quantized graph's own Q/DQ layers.
_GRAPH_FLAGS = {**_PRECISION_FLAGS, "mixed": "INT8", "int8-weights": "INT8",
                "int4-weights": "INT4"}
# Precisions a graph can be lowered to by a builder flag, from the graph's own precision
# (none from any other, quantized graphs included).
_LOWERABLE = {"fp32": ("fp16", "bf16")}


@dataclasses.dataclass(frozen=True)
class PrecisionMode:
    """How the engine gets its precision: a strongly typed network and/or builder flags."""

    precision: str
    strongly_typed: bool
    flags: tuple[str, ...]


def select_precision_mode(
    requested: str | None,
    *,
    graph: str,
    has_strong_typing: bool,
    available_flags: frozenset[str],
) -> PrecisionMode:
    """Pick the network typing and builder flags for ``requested`` precision.

    ``graph`` is what the ONNX graph holds (``graph_precision``), ``available_flags`` the
    precision builder flags this TensorRT still has (``FP16``, ``BF16``, ``INT8``, ``INT4``).
    Raises ``ValueError`` with one readable line when the combination cannot be built.
    """
    target = requested or graph
    if target == graph:
        if has_strong_typing:
            return PrecisionMode(graph, True, ())
        # Weakly typed networks need the flag to keep a graph's own low precision.
        flag = _GRAPH_FLAGS.get(graph)
        if flag is not None and flag not in available_flags:
            raise ValueError(f"this TensorRT can neither type strongly nor set {flag}")
        return PrecisionMode(graph, False, (flag,) if flag else ())
    if target not in _LOWERABLE.get(graph, ()):
        hint = (
            ": int8 needs a quantized graph with Q/DQ nodes (graphopt optimize --preset int8),"
            " there is no calibrator here"
            if target == "int8" and graph not in QUANTIZED_PRECISIONS else ""
        )
        raise ValueError(f"the graph holds {graph}, TensorRT cannot run it as {target}{hint}")
    flag = _PRECISION_FLAGS[target]
    if flag not in available_flags:
        raise ValueError(
            f"this TensorRT has no {flag} builder flag (strong typing only): precision comes"
            f" from the graph, convert it to {target} first (graphopt optimize --preset {target})"
        )
    return PrecisionMode(target, False, (flag,))


def profile_shapes(
    inputs: Mapping[str, TensorMeta],
    *,
    batch_size: int,
    max_batch_size: int | None = None,
    dims: Mapping[str, int] | None = None,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes of an optimization profile; empty when every input is static.

    A dynamic first axis is the batch: min 1, opt ``batch_size``, max ``max_batch_size``
    (default ``batch_size``). Other dynamic axes take a fixed value from ``dims`` (by dim name,
    or ``"<input>:<axis>"``); without one a ``ValueError`` names the input and axis.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_batch = max(batch_size, max_batch_size or batch_size)
    dims = dict(dims or {})
    if all(all(isinstance(d, int) and d >= 0 for d in m.shape) for m in inputs.values()):
        return {}
    shapes = {}
    for name, meta in inputs.items():
        sizes = [_axis_size(name, axis, dim, batch_size, max_batch, dims)
                 for axis, dim in enumerate(meta.shape)]
        shapes[name] = tuple(tuple(size[i] for size in sizes) for i in range(3))
    return shapes


def _axis_size(
    name: str, axis: int, dim: int | str | None, batch: int, max_batch: int,
    dims: Mapping[str, int],
) -> tuple[int, int, int]:
    """(min, opt, max) of one axis."""
    if isinstance(dim, int) and dim >= 0:
        return dim, dim, dim
    if axis == 0:
        return 1, batch, max_batch
    key = f"{name}:{axis}"
    value = dims.get(key, dims.get(dim) if isinstance(dim, str) else None)
    if value is None:
        raise ValueError(
            f"input {name!r} axis {axis} ({dim or 'unnamed'}) is dynamic:"
            f" give its size (dims {{{key!r}: N}})"
        )
    return value, value, value


def engine_cache_key(
    model_bytes: bytes, *, trt_version: str, device_name: str, settings: Mapping[str, object]
) -> str:
    """sha256 over the model, TensorRT version, device and builder settings (order-free)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(model_bytes).digest())
    meta = {"format": _CACHE_FORMAT, "trt": trt_version, "device": device_name,
            "settings": settings}
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def engine_cache_dir() -> Path:
    """``$GRAPHOPT_CACHE_DIR/tensorrt`` or the user cache dir's ``graphopt/tensorrt``."""
    override = os.environ.get("GRAPHOPT_CACHE_DIR")
    if override:
        return Path(override) / "tensorrt"
    import platformdirs

    return Path(platformdirs.user_cache_dir("graphopt")) / "tensorrt"


def engine_cache_path(key: str) -> Path:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not an engine cache key: {key!r}")
    return engine_cache_dir() / f"{key}.engine"


def _has_strong_typing(trt) -> bool:
    """TensorRT 10 has the STRONGLY_TYPED network flag; from 11 every network is strongly typed
    (the flag is kept, ignored, and may go)."""
    major = int(str(trt.__version__).split(".")[0])
    return major >= 11 or hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def _model_identity(path: Path) -> bytes:
    """The model's bytes plus the sha256 of each external-data file it references, so a cached
    engine is never reused for a model whose weights changed beside it."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    data = path.read_bytes()
    proto = onnx.load(str(path), load_external_data=False)
    locations = sorted({
        entry.value
        for tensor in proto.graph.initializer if uses_external_data(tensor)
        for entry in tensor.external_data if entry.key == "location"
    })
    parts = [data]
    for location in locations:
        digest = hashlib.sha256()
        with open(path.parent / location, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        parts.append(f"{location}:{digest.hexdigest()}".encode())
    return b"\0".join(parts)


# -- CUDA through cuda-python or pycuda ----------------------------------------------------


class _CudaPython:
    """CUDA runtime calls through cuda-python (every call returns ``(error, *values)``)."""

    library = "cuda-python"

    def __init__(self, device: int) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self._rt = cudart
        self._check(cudart.cudaSetDevice(device))
        props = self._check(cudart.cudaGetDeviceProperties(device))
        name = props.name
        self.device_name = name.decode(errors="replace").rstrip("\0") if isinstance(
            name, bytes) else str(name)

    def _check(self, result):
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA error {error}")
        return values[0] if len(values) == 1 else tuple(values) or None

    @staticmethod
    def device_count() -> int:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        error, count = cudart.cudaGetDeviceCount()
        return count if error == cudart.cudaError_t.cudaSuccess else 0

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes)))

    def free(self, pointer: int) -> None:
        self._check(self._rt.cudaFree(pointer))

    def stream(self):
        return self._check(self._rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return int(stream)

    def destroy_stream(self, stream) -> None:
        self._check(self._rt.cudaStreamDestroy(stream))

    def synchronize(self, stream) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream))

    def to_device(self, pointer: int, array: np.ndarray, stream) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind,
                                             stream))

    def to_host(self, array: np.ndarray, pointer: int, stream) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind,
                                             stream))

    def event(self):
        return self._check(self._rt.cudaEventCreate())

    def record(self, event, stream) -> None:
        self._check(self._rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start, end) -> float:
        return float(self._check(self._rt.cudaEventElapsedTime(start, end)))

    def close(self) -> None:
        return None


class _PyCuda:
    """The same calls through pycuda (its own context, pushed on creation, popped on close)."""

    library = "pycuda"

    def __init__(self, device: int) -> None:
        import pycuda.driver as driver

        driver.init()
        self._driver = driver
        handle = driver.Device(device)
        self._context = handle.make_context()
        self.device_name = handle.name()

    @staticmethod
    def device_count() -> int:
        import pycuda.driver as driver

        driver.init()
        return driver.Device.count()

    def malloc(self, nbytes: int):
        return self._driver.mem_alloc(nbytes)

    def free(self, pointer) -> None:
        pointer.free()

    def stream(self):
        return self._driver.Stream()

    def stream_handle(self, stream) -> int:
        return stream.handle

    def destroy_stream(self, stream) -> None:
        return None

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def to_device(self, pointer, array: np.ndarray, stream) -> None:
        self._driver.memcpy_htod_async(pointer, array, stream)

    def to_host(self, array: np.ndarray, pointer, stream) -> None:
        self._driver.memcpy_dtoh_async(array, pointer, stream)

    def event(self):
        return self._driver.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def close(self) -> None:
        self._context.pop()


def _cuda_binding() -> tuple[type | None, str]:
    """The first CUDA binding that imports, or ``(None, why none does)``."""
    for binding, module in ((_CudaPython, "cuda.bindings.runtime"), (_CudaPython, "cuda.cudart"),
                            (_PyCuda, "pycuda.driver")):
        try:
            __import__(module)
        except ImportError:
            continue
        return binding, ""
    return None, "no CUDA binding (pip install cuda-python or pycuda)"


def tensorrt_available() -> tuple[bool, str]:
    """``(True, "")`` when tensorrt, a CUDA binding and a CUDA device are all present."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, "tensorrt is not installed (pip install tensorrt cuda-python)"
    binding, reason = _cuda_binding()
    if binding is None:
        return False, f"tensorrt {trt.__version__} found but {reason}"
    try:
        count = binding.device_count()
    except Exception as exc:  # driver missing: cuda-python and pycuda raise their own types
        return False, f"no usable CUDA driver ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no CUDA device here"
    return True, ""


# -- the runner ----------------------------------------------------------------------------


class _Logger:
    """A tensorrt logger forwarding to :mod:`logging` (built when tensorrt is imported)."""

    @staticmethod
    def create(trt):
        class Forward(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, msg) -> None:
                level = {
                    trt.ILogger.INTERNAL_ERROR: logging.ERROR,
                    trt.ILogger.ERROR: logging.ERROR,
                    trt.ILogger.WARNING: logging.WARNING,
                    trt.ILogger.INFO: logging.DEBUG,
                }.get(severity, logging.DEBUG)
                logger.log(level, "tensorrt: %s", msg)

        return Forward()


class TensorRtRunner(Runner):
    """A TensorRT engine for one ONNX model on one CUDA device."""

    supports_async = False  # one execution context is not safe to share between requests

    def __init__(
        self,
        model: ModelSource,
        *,
        precision: str | None = None,
        batch_size: int = 1,
        max_batch_size: int | None = None,
        dims: Mapping[str, int] | None = None,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        builder_optimization_level: int | None = None,
        use_cache: bool = True,
        device: int = 0,
        name: str | None = None,
    ) -> None:
        if precision is not None and precision not in ("fp32", *_PRECISION_FLAGS):
            raise ValueError(f"TensorRT precision {precision!r} is not fp32, fp16, bf16 or int8")
        super().__init__(model, name=name or "tensorrt")
        self.requested_precision = precision
        self.batch_size = batch_size
        self.max_batch_size = max_batch_size
        self.dims = dict(dims or {})
        self.workspace_mb = workspace_mb
        self.builder_optimization_level = builder_optimization_level
        self.use_cache = use_cache
        self.device = device
        self.last_device_ms: float | None = None
        self._cuda = None
        self._engine = None
        self._context = None
        self._stream = None
        self._events = None
        self._buffers: dict[str, tuple[object, int]] = {}
        self._inputs: dict[str, TensorMeta] = {}
        self._outputs: dict[str, TensorMeta] = {}

    def builder_settings(self, mode: PrecisionMode, shapes: Mapping) -> dict[str, object]:
        """Every builder setting that changes the engine (part of the cache key)."""
        return {
            "precision": mode.precision,
            "strongly_typed": mode.strongly_typed,
            "flags": list(mode.flags),
            "tf32": False,
            "workspace_mb": self.workspace_mb,
            "builder_optimization_level": self.builder_optimization_level,
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
        }

    def _activate_impl(self) -> None:
        import tensorrt as trt

        ok, reason = tensorrt_available()
        if not ok:
            raise RuntimeError(reason)
        binding, _ = _cuda_binding()
        self._cuda = binding(self.device)
        path = self.load_model()
        model_bytes = _model_identity(path)
        trt_logger = _Logger.create(trt)
        mode = select_precision_mode(
            self.requested_precision,
            graph=graph_precision(path),
            has_strong_typing=_has_strong_typing(trt),
            available_flags=frozenset(
                f for f in set(_GRAPH_FLAGS.values()) if hasattr(trt.BuilderFlag, f)
            ),
        )
        with self._compiling():  # engine build (or cache load) and deserialization
            engine_bytes, cache_state, shapes = self._engine_bytes(trt, trt_logger, path,
                                                                   model_bytes, mode)
            runtime = trt.Runtime(trt_logger)
            self._engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._stream = self._cuda.stream()
        self._events = (self._cuda.event(), self._cuda.event())
        self._read_io(trt)
        self.precision = mode.precision
        self.settings = {
            "runtime": "tensorrt",
            "version": trt.__version__,
            "cuda_binding": self._cuda.library,
            "device": self.device,
            "device_name": self._cuda.device_name,
            "engine_cache": cache_state,
            **self.builder_settings(mode, shapes),
        }

    def _engine_bytes(self, trt, trt_logger, path: Path, model_bytes: bytes,
                      mode: PrecisionMode) -> tuple[bytes, str, dict]:
        builder = trt.Builder(trt_logger)
        flags = 0
        strongly_typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if mode.strongly_typed and strongly_typed_flag is not None:
            flags |= 1 << int(strongly_typed_flag)  # implicit (flag gone) in later releases
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, trt_logger)
        if not parser.parse_from_file(str(path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT cannot parse the model: {'; '.join(errors)[:300]}")
        inputs = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(d if d >= 0 else None for d in tensor.shape)
            inputs[tensor.name] = TensorMeta(np.dtype(trt.nptype(tensor.dtype)), shape)
        shapes = profile_shapes(inputs, batch_size=self.batch_size,
                                max_batch_size=self.max_batch_size, dims=self.dims)
        settings = self.builder_settings(mode, shapes)
        key = engine_cache_key(model_bytes, trt_version=trt.__version__,
                               device_name=self._cuda.device_name, settings=settings)
        cached = engine_cache_path(key)
        if self.use_cache and cached.is_file():
            logger.info("%s: engine cache hit %s", self.name, cached)
            return cached.read_bytes(), "hit", shapes
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        for flag in mode.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if self.builder_optimization_level is not None:
            config.builder_optimization_level = self.builder_optimization_level
        if shapes:
            profile = builder.create_optimization_profile()
            for name, (low, opt, high) in shapes.items():
                profile.set_shape(name, low, opt, high)
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT failed to build the engine (see the log with --debug)")
        data = bytes(serialized)
        if self.use_cache:
            atomic.write_bytes(cached, data, what="TensorRT engine cache")
        return data, ("miss" if self.use_cache else "off"), shapes

    def _read_io(self, trt) -> None:
        engine = self._engine
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name))
            meta = TensorMeta(np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs[name] = meta
            else:
                self._outputs[name] = meta

    def _buffer(self, name: str, nbytes: int):
        """A device buffer of at least ``nbytes`` for tensor ``name`` (grown on demand)."""
        current = self._buffers.get(name)
        if current is not None and current[1] >= nbytes:
            return current[0]
        if current is not None:
            self._cuda.free(current[0])
        pointer = self._cuda.malloc(max(nbytes, 1))
        self._buffers[name] = (pointer, max(nbytes, 1))
        return pointer

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, context, stream = self._cuda, self._context, self._stream
        for name, meta in self._inputs.items():
            array = np.ascontiguousarray(feed[name], dtype=meta.dtype)
            context.set_input_shape(name, array.shape)
            pointer = self._buffer(name, array.nbytes)
            cuda.to_device(pointer, array, stream)
            context.set_tensor_address(name, int(pointer))
        outputs = {}
        for name, meta in self._outputs.items():
            shape = tuple(context.get_tensor_shape(name))
            outputs[name] = np.empty(shape, dtype=meta.dtype)
            context.set_tensor_address(name, int(self._buffer(name, outputs[name].nbytes)))
        start, end = self._events
        cuda.record(start, stream)
        if not context.execute_async_v3(cuda.stream_handle(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        cuda.record(end, stream)
        for name, array in outputs.items():
            cuda.to_host(array, self._buffers[name][0], stream)
        cuda.synchronize(stream)
        self.last_device_ms = cuda.elapsed_ms(start, end)
        return outputs

    def _deactivate_impl(self) -> None:
        cuda = self._cuda
        try:
            if cuda is not None:
                for pointer, _ in self._buffers.values():
                    cuda.free(pointer)
                if self._stream is not None:
                    cuda.destroy_stream(self._stream)
        finally:
            self._buffers.clear()
            self._context = self._engine = self._stream = self._events = None
            if cuda is not None:
                cuda.close()
            self._cuda = None

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return dict(self._inputs)

    def _output_metadata_impl(self) -> dict[str, TensorMeta]:
        return dict(self._outputs)
