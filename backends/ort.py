"""ONNX Runtime runner: any installed execution provider, optimization level, threads, IO binding.

Providers are named without the ``ExecutionProvider`` suffix: ``cpu``, ``cuda``, ``tensorrt``,
``openvino``. The CPU provider is always appended as the fallback for unsupported nodes, as ORT
itself does. ``precision`` is what the graph holds (``graph_precision``) unless a provider is
told to lower a float graph (TensorRT EP ``fp16``/``int8``, OpenVINO EP ``fp16``); a quantized
graph (``int8``, ``mixed``, ``int8-weights``, ``int4-weights``) reports its own name whatever
the provider does with its float part (``requested_precision`` in ``settings`` says what).

Concurrent requests run ``session.run`` (which releases the GIL) on a thread pool; by default
workers x intra-op threads = available cores, so one worker when ORT uses every core.

``pin=True`` binds each intra-op thread to a core of its own (:mod:`graphopt.backends.placement`):
the calling thread, which runs part of every parallel region, to the first available core
while the runner is active, the pool threads to the next ones. Without ``threads`` it pins
one thread per available core. Left alone (``threads=0``), ORT places its pool threads itself
and the caller floats.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphopt.backends import placement
from graphopt.backends.base import ModelSource, Runner, TensorMeta, graph_precision
from graphopt.precision import QUANTIZED_PRECISIONS

__all__ = [
    "PROVIDERS",
    "OPTIMIZATION_LEVELS",
    "DEFAULT_OPTIMIZATION",
    "DEFAULT_THREADS",
    "OrtRunner",
    "available_providers",
    "provider_available",
]

logger = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")
DEFAULT_OPTIMIZATION = "all"
DEFAULT_THREADS = 0  # 0: ORT's own default (one per physical core)
# Precisions each provider can be told to run in, beyond the graph's own.
_PROVIDER_PRECISIONS = {
    "cpu": (),
    "cuda": (),
    "tensorrt": ("fp16", "int8"),
    "openvino": ("fp16",),
}
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers."""
    import onnxruntime as ort

    installed = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in installed]


def provider_available(provider: str) -> tuple[bool, str]:
    """``(True, "")`` when ``provider`` is in this onnxruntime build, else ``(False, why)``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return False, f"onnxruntime is not importable ({exc})"
    if provider not in PROVIDERS:
        return False, f"unknown provider {provider!r}"
    if PROVIDERS[provider] in ort.get_available_providers():
        return True, ""
    package = {"cuda": "onnxruntime-gpu", "tensorrt": "onnxruntime-gpu with TensorRT",
               "openvino": "onnxruntime-openvino"}.get(provider, "onnxruntime")
    return False, (
        f"onnxruntime {ort.__version__} has no {PROVIDERS[provider]} (needs {package})"
    )


def _default_workers(threads: int) -> int:
    """Concurrent requests share the session's intra-op pool: workers x threads = cores keeps
    the CPU busy without oversubscribing it (one worker when ORT uses every core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads) if threads > 0 else 1


def _meta(node_arg) -> TensorMeta:
    dtype = np.dtype(_DTYPES.get(node_arg.type, np.float32))
    shape = tuple(d if isinstance(d, int) else (d or None) for d in node_arg.shape)
    return TensorMeta(dtype, shape)


class OrtRunner(Runner):
    """onnxruntime ``InferenceSession`` on one execution provider (CPU fallback)."""

    def __init__(
        self,
        model: ModelSource,
        *,
        provider: str = "cpu",
        precision: str | None = None,
        optimization: str = DEFAULT_OPTIMIZATION,
        threads: int = DEFAULT_THREADS,
        inter_op_threads: int = 1,
        io_binding: bool = False,
        spinning: bool = True,
        pin: bool = False,
        provider_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        async_workers: int | None = None,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r} (known: {', '.join(PROVIDERS)})")
        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"unknown optimization level {optimization!r}"
                f" (known: {', '.join(OPTIMIZATION_LEVELS)})"
            )
        allowed = _PROVIDER_PRECISIONS[provider]
        if precision is not None and precision != "fp32" and precision not in allowed:
            raise ValueError(
                f"ORT {provider} runs the graph's own precision; it cannot be told to run"
                f" {precision} (convert or quantize the model instead)"
            )
        if pin:
            threads = threads or len(placement.available_cores())
            placement.ort_pool_affinities(threads)  # fail now when there are too few cores
        super().__init__(model, name=name or f"ort-{provider}",
                         async_workers=async_workers or _default_workers(threads))
        self.provider = provider
        self.requested_precision = precision
        self.optimization = optimization
        self.threads = threads
        self.inter_op_threads = inter_op_threads
        self.io_binding = io_binding
        self.spinning = spinning
        self.pin = pin
        self._caller_pinned = False
        self.provider_options = dict(provider_options or {})
        self.session = None
        self._local = threading.local()
        self._output_names: list[str] = []

    def _options(self):
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT",
                              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[self.optimization]
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.inter_op_threads > 1
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        options.log_severity_level = 3
        if not self.spinning:
            # Idle intra-op threads sleep instead of spinning: slower hand-offs, but far less
            # sensitive to other processes competing for the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.pin and self.threads > 1:
            options.add_session_config_entry("session.intra_op_thread_affinities",
                                             placement.ort_pool_affinities(self.threads))
        return options

    def _provider_list(self) -> list:
        options = dict(self.provider_options)
        precision = self.requested_precision
        if self.provider == "tensorrt":
            options.setdefault("trt_fp16_enable", precision in ("fp16", "int8"))
            options.setdefault("trt_int8_enable", precision == "int8")
        elif self.provider == "openvino" and precision == "fp16":
            options.setdefault("precision", "FP16")
        providers: list = [(PROVIDERS[self.provider], options)]
        if self.provider != "cpu":
            providers.append("CPUExecutionProvider")
        return providers

    def _activate_impl(self) -> None:
        import onnxruntime as ort

        ok, reason = provider_available(self.provider)
        if not ok:
            raise RuntimeError(reason)
        path = self.load_model()
        options, providers = self._options(), self._provider_list()
        if self.pin:
            placement.pin_caller(placement.available_cores()[0])
            self._caller_pinned = True
        with self._compiling():
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        self._output_names = [o.name for o in self.session.get_outputs()]
        active = self.session.get_providers()
        if PROVIDERS[self.provider] not in active:
            logger.warning("%s: %s was not used, running on %s", self.name,
                           PROVIDERS[self.provider], active)
        graph = graph_precision(path)
        lowered = self.requested_precision not in (None, "fp32") and (
            PROVIDERS[self.provider] in active and graph not in QUANTIZED_PRECISIONS
        )
        self.precision = self.requested_precision if lowered else graph
        self.settings = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": active,
            "provider_options": {k: str(v) for k, v in self.provider_options.items()},
            "graph_optimization": self.optimization,
            "intra_op_threads": self.threads or "default (one per physical core)",
            "inter_op_threads": self.inter_op_threads,
            "io_binding": self.io_binding,
            "thread_spinning": self.spinning,
            "thread_pinning": self._pinning(),
            "requested_precision": self.requested_precision,
            "async_workers": self.async_workers,
        }

    def _pinning(self) -> str:
        if not self.pin:
            return "off" if self.threads else "runtime default (ORT places its pool threads)"
        cores = placement.available_cores()
        pool = cores[1:self.threads]
        return f"caller on core {cores[0]}" + (f", pool on cores {pool}" if pool else "")

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.io_binding:
            values = self.session.run(self._output_names, dict(feed))
            return dict(zip(self._output_names, values, strict=True))
        binding = self._thread_binding()
        device = "cpu" if self.provider == "cpu" else "cuda"
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self._output_names:
            binding.bind_output(name, device)
        self.session.run_with_iobinding(binding)
        values = binding.copy_outputs_to_cpu()
        return dict(zip(self._output_names, values, strict=True))

    def _thread_binding(self):
        """One IO binding per thread: a binding is not safe to share between requests."""
        binding = getattr(self._local, "binding", None)
        if binding is None or self._local.session is not self.session:
            binding = self.session.io_binding()
            self._local.binding, self._local.session = binding, self.session
        return binding

    def _deactivate_impl(self) -> None:
        self._local = threading.local()
        self.session = None
        if self._caller_pinned:
            placement.unpin_caller()
            self._caller_pinned = False

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return {i.name: _meta(i) for i in self.session.get_inputs()}

    def _output_metadata_impl(self) -> dict[str, TensorMeta]:
        return {o.name: _meta(o) for o in self.session.get_outputs()}
