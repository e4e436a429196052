"""Native OpenVINO runner: ``Core().compile_model`` with device, hint, precision and streams.

OpenVINO picks its own inference precision unless told: on CPUs with bf16 support (AMX,
AVX512-BF16) the default is bf16, not the fp32 the model was written in. The runner therefore
reads ``INFERENCE_PRECISION_HINT`` back from the compiled model and reports that as
``precision``; a quantized graph reports the graph's own name (``int8``, ``mixed``,
``int8-weights``, ``int4-weights``: its quantized layers run as quantized whatever the hint
says about the rest, which ``settings["inference_precision_hint"]`` records).

``pin`` sets ``ENABLE_CPU_PINNING`` (``ov::hint::enable_cpu_pinning``: each stream's threads
bound to cores); ``None`` leaves OpenVINO's default, and the value in use is read back.

Concurrent throughput goes through ``AsyncInferQueue`` with as many requests as the compiled
model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` (at least two, so one request is always queued).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import numpy as np

from graphopt.backends.base import ModelSource, Runner, TensorMeta, graph_precision
from graphopt.precision import QUANTIZED_PRECISIONS

__all__ = [
    "DEVICES",
    "HINTS",
    "OPENVINO_PRECISIONS",
    "OpenVinoRunner",
    "openvino_available",
    "device_available",
]

logger = logging.getLogger(__name__)

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
HINTS = ("latency", "throughput", "cumulative_throughput")
# Our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_FROM_OPENVINO = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
_MIN_ASYNC_REQUESTS = 2


@functools.lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()


def openvino_available() -> tuple[bool, str]:
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return False, f"openvino is not installed ({exc}): pip install openvino"
    return True, ""


def device_available(device: str) -> tuple[bool, str]:
    """Whether OpenVINO sees ``device`` here (``AUTO`` needs any device)."""
    ok, reason = openvino_available()
    if not ok:
        return ok, reason
    devices = _core().available_devices
    if device == "AUTO":
        return (bool(devices), "" if devices else "OpenVINO sees no device")
    if any(d == device or d.startswith(f"{device}.") for d in devices):
        return True, ""
    return False, f"OpenVINO sees no {device} device here (devices: {', '.join(devices)})"


def _meta(port) -> TensorMeta:
    shape = tuple(
        d.get_length() if d.is_static else None for d in port.get_partial_shape()
    )
    return TensorMeta(np.dtype(port.get_element_type().to_dtype()), shape)


def _port_name(port, index: int) -> str:
    names = port.get_names()
    return port.get_any_name() if names else f"output_{index}"


class OpenVinoRunner(Runner):
    """An OpenVINO compiled model on one device with sync and async requests."""

    def __init__(
        self,
        model: ModelSource,
        *,
        device: str = "CPU",
        precision: str | None = None,
        hint: str = "latency",
        streams: int | None = None,
        threads: int | None = None,
        requests: int | None = None,
        pin: bool | None = None,
        name: str | None = None,
    ) -> None:
        device = device.upper()
        if device not in DEVICES:
            raise ValueError(f"unknown OpenVINO device {device!r} (known: {', '.join(DEVICES)})")
        if hint not in HINTS:
            raise ValueError(f"unknown performance hint {hint!r} (known: {', '.join(HINTS)})")
        if precision is not None and precision not in OPENVINO_PRECISIONS:
            raise ValueError(
                f"OpenVINO inference precision {precision!r} is not one of"
                f" {', '.join(OPENVINO_PRECISIONS)} (int8 comes from a quantized graph)"
            )
        super().__init__(model, name=name or f"openvino-{device.lower()}")
        self.device = device
        self.requested_precision = precision
        self.hint = hint
        self.streams = streams
        self.threads = threads
        self.requests = requests
        self.pin = pin
        self.compiled = None
        self._request = None
        self._queue = None
        self._submitted = 0
        self._output_names: list[str] = []

    def compile_config(self) -> dict[str, str]:
        """The properties handed to ``compile_model``."""
        config = {"PERFORMANCE_HINT": self.hint.upper()}
        if self.requested_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_PRECISIONS[self.requested_precision]
        if self.streams is not None:
            config["NUM_STREAMS"] = str(self.streams)
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        if self.pin is not None:
            config["ENABLE_CPU_PINNING"] = "YES" if self.pin else "NO"
        return config

    def _activate_impl(self) -> None:
        import openvino as ov

        ok, reason = device_available(self.device)
        if not ok:
            raise RuntimeError(reason)
        path = self.load_model()
        core = _core()
        with self._compiling():
            model = core.read_model(str(path))
            self.compiled = core.compile_model(model, self.device, self.compile_config())
        self._request = self.compiled.create_infer_request()
        self._output_names = [_port_name(p, i) for i, p in enumerate(self.compiled.outputs)]
        used_name = self._used_precision()
        if used_name and self.requested_precision and used_name != self.requested_precision:
            logger.warning("%s: asked for %s, OpenVINO runs %s", self.name,
                           self.requested_precision, used_name)
        graph = graph_precision(path)
        # A quantized graph reports its own name even when the hint (bf16 on AMX CPUs) runs its
        # float part lower: the quantized layers dominate the error, and int8's tolerance, which
        # every quantized name is judged on, covers bf16's. The compute-bound energy then prices
        # that float part at the graph's float type, a looser (higher) bound than bf16's.
        # Never assume: a precision OpenVINO does not report is "unknown" (judged as fp32).
        self.precision = graph if graph in QUANTIZED_PRECISIONS else (used_name or "unknown")
        self.settings = {
            "runtime": "openvino",
            "version": ov.__version__,
            "device": self.device,
            "device_name": self._device_name(),
            "execution_devices": self._read_property("EXECUTION_DEVICES"),
            "performance_hint": self.hint,
            "requested_precision": self.requested_precision,
            "inference_precision_hint": used_name,
            "num_streams": self._read_property("NUM_STREAMS"),
            "inference_num_threads": self._read_property("INFERENCE_NUM_THREADS"),
            "enable_cpu_pinning": self._read_property("ENABLE_CPU_PINNING"),
            "optimal_requests": self._read_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
            "async_requests": self._async_requests(),
        }

    def _raw_property(self, key: str):
        """A compiled-model property; for AUTO (which does not forward device properties) the
        value its execution devices agree on, from ``DEVICE_PROPERTIES``. ``None`` if unknown."""
        try:
            return self.compiled.get_property(key)
        except RuntimeError:
            pass
        try:
            per_device = self.compiled.get_property("DEVICE_PROPERTIES")
        except RuntimeError:
            return None
        values = {str(props[key]): props[key] for props in per_device.values() if key in props}
        return next(iter(values.values())) if len(values) == 1 else None

    def _read_property(self, key: str):
        """A property as int or str (``None`` when it cannot be read)."""
        value = self._raw_property(key)
        return value if value is None or isinstance(value, (int, str)) else str(value)

    def _used_precision(self) -> str | None:
        """The inference precision the compiled model really uses, in our names."""
        used = self._raw_property("INFERENCE_PRECISION_HINT")
        if used is None:
            return None
        type_name = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
        return _FROM_OPENVINO.get(type_name, type_name)

    def _device_name(self) -> str | None:
        try:
            return str(_core().get_property(self.device, "FULL_DEVICE_NAME"))
        except RuntimeError:
            return None

    def _async_requests(self) -> int:
        if self.requests is not None:
            return self.requests
        optimal = self._read_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        return max(_MIN_ASYNC_REQUESTS, int(optimal or 0))

    def _outputs(self, result) -> dict[str, np.ndarray]:
        return {
            name: np.array(result[port], copy=True)
            for name, port in zip(self._output_names, self.compiled.outputs, strict=True)
        }

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._outputs(self._request.infer(dict(feed)))

    def _submit_impl(self, feed: Mapping[str, np.ndarray]) -> None:
        if self._queue is None:
            import openvino as ov

            self._queue = ov.AsyncInferQueue(self.compiled, self._async_requests())
        # start_async blocks while every request in the pool is busy.
        self._queue.start_async(dict(feed))
        self._submitted += 1

    def _wait_all_impl(self) -> int:
        if self._queue is not None:
            self._queue.wait_all()
        done, self._submitted = self._submitted, 0
        return done

    def _deactivate_impl(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = None
        self._request = None
        self.compiled = None

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return {p.get_any_name(): _meta(p) for p in self.compiled.inputs}

    def _output_metadata_impl(self) -> dict[str, TensorMeta]:
        return {
            name: _meta(p)
            for name, p in zip(self._output_names, self.compiled.outputs, strict=True)
        }
