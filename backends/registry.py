"""Backend names as written on the command line, and the runners they build.

Grammar of one backend spec::

    spec      := NAME [":" PRECISION] ["@" option ("," option)*]
    option    := KEY "=" VALUE
    PRECISION := fp32 | bf16 | fp16 | int8      (aliases f32, f16, bfloat16, i8 ...)

Examples: ``ort-cpu``, ``ort-cpu@threads=4,opt=basic``, ``openvino-cpu:f32``,
``openvino-cpu:bf16@hint=throughput,streams=2``, ``tensorrt:fp16@workspace_mb=2048``.

A list of specs (``--backend``) is comma-separated; an item of the form ``KEY=VALUE`` continues
the options of the spec before it, so ``ort-cpu@threads=2,opt=all,openvino-cpu`` is two specs.

Without a precision a runner runs what its runtime does by default (OpenVINO may pick bf16)
or what the graph holds; the precision it actually ran is always read back and reported.
Unknown names, precisions or options, and backends that cannot run here, raise
:class:`~graphopt.errors.BackendUnavailableError` with one line saying why.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from graphopt.backends.base import ModelSource, Runner, canonical_precision
from graphopt.errors import BackendUnavailableError, GraphoptError, reason_line

__all__ = [
    "BackendSpec",
    "Backend",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "parse_backend",
    "parse_backend_list",
    "available_backends",
    "check_available",
    "create_runner",
    "start_runner",
]

DEFAULT_BACKEND = "ort-cpu"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _to_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value}")
    return value


def _to_lower(text: str) -> str:
    return text.strip().lower()


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A parsed spec: backend name, requested precision (or ``None``), raw options."""

    name: str
    precision: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        text = self.name if self.precision is None else f"{self.name}:{self.precision}"
        if self.options:
            text += "@" + ",".join(f"{k}={v}" for k, v in self.options.items())
        return text


@dataclasses.dataclass(frozen=True)
class Backend:
    """One backend name: what it runs on, what it accepts, how to build its runner.

    ``device`` is ``cpu``, ``gpu`` or ``npu`` (which energy meters apply); ``options`` maps
    each accepted option to a converter from text and the runner keyword it
    sets; ``check`` says whether the backend can run here; ``factory(model, precision=...,
    batch_size=..., **keywords)`` builds the runner (runtimes with dynamic batch handling
    ignore ``batch_size``).
    """

    name: str
    description: str
    device: str
    precisions: tuple[str, ...]
    options: Mapping[str, tuple[Callable[[str], object], str]]
    check: Callable[[], tuple[bool, str]]
    factory: Callable[..., Runner]


def _ort_options(extra: Mapping[str, tuple[Callable[[str], object], str]] | None = None):
    options = {
        "threads": (_to_int, "threads"),
        "inter_op_threads": (_to_int, "inter_op_threads"),
        "opt": (_to_lower, "optimization"),
        "io_binding": (_to_bool, "io_binding"),
        "spin": (_to_bool, "spinning"),
        "pin": (_to_bool, "pin"),
        "workers": (_to_int, "async_workers"),
    }
    options.update(extra or {})
    return options


_OPENVINO_OPTIONS = {
    "hint": (_to_lower, "hint"),
    "streams": (_to_int, "streams"),
    "threads": (_to_int, "threads"),
    "requests": (_to_int, "requests"),
    "pin": (_to_bool, "pin"),
}
_TENSORRT_OPTIONS = {
    "workspace_mb": (_to_int, "workspace_mb"),
    "builder_level": (_to_int, "builder_optimization_level"),
    "max_batch": (_to_int, "max_batch_size"),
    "cache": (_to_bool, "use_cache"),
    "device": (_to_int, "device"),
}


def _ort(provider: str) -> tuple[Callable[[], tuple[bool, str]], Callable[..., Runner]]:
    def check() -> tuple[bool, str]:
        from graphopt.backends.ort import provider_available

        return provider_available(provider)

    def factory(model: ModelSource, *, batch_size: int, **keywords) -> Runner:
        from graphopt.backends.ort import OrtRunner

        return OrtRunner(model, provider=provider, **keywords)

    return check, factory


def _openvino(device: str) -> tuple[Callable[[], tuple[bool, str]], Callable[..., Runner]]:
    def check() -> tuple[bool, str]:
        from graphopt.backends.openvino import device_available

        return device_available(device)

    def factory(model: ModelSource, *, batch_size: int, **keywords) -> Runner:
        from graphopt.backends.openvino import OpenVinoRunner

        return OpenVinoRunner(model, device=device, **keywords)

    return check, factory


def _tensorrt_check() -> tuple[bool, str]:
    from graphopt.backends.tensorrt import tensorrt_available

    return tensorrt_available()


def _tensorrt_factory(model: ModelSource, *, batch_size: int, **keywords) -> Runner:
    from graphopt.backends.tensorrt import TensorRtRunner

    # The engine's optimization profile is built for the batch size that will be measured.
    return TensorRtRunner(model, batch_size=batch_size, **keywords)


def _make(name, description, device, precisions, options, pair) -> Backend:
    check, factory = pair
    return Backend(name, description, device, precisions, options, check, factory)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        _make("ort-cpu", "onnxruntime, CPU execution provider", "cpu", ("fp32",),
              _ort_options(), _ort("cpu")),
        _make("ort-cuda", "onnxruntime, CUDA execution provider", "gpu", ("fp32",),
              _ort_options(), _ort("cuda")),
        _make("ort-trt", "onnxruntime, TensorRT execution provider", "gpu",
              ("fp32", "fp16", "int8"), _ort_options(), _ort("tensorrt")),
        _make("ort-openvino", "onnxruntime, OpenVINO execution provider", "cpu", ("fp32", "fp16"),
              _ort_options(), _ort("openvino")),
        _make("openvino-cpu", "OpenVINO runtime on the CPU", "cpu", ("fp32", "bf16", "fp16"),
              _OPENVINO_OPTIONS, _openvino("CPU")),
        _make("openvino-gpu", "OpenVINO runtime on an Intel GPU", "gpu", ("fp32", "fp16"),
              _OPENVINO_OPTIONS, _openvino("GPU")),
        _make("openvino-npu", "OpenVINO runtime on an Intel NPU", "npu", ("fp16",),
              _OPENVINO_OPTIONS, _openvino("NPU")),
        _make("openvino-auto", "OpenVINO AUTO device selection", "cpu", ("fp32", "bf16", "fp16"),
              _OPENVINO_OPTIONS, _openvino("AUTO")),
        _make("tensorrt", "TensorRT engine built from the ONNX graph (NVIDIA GPU)", "gpu",
              ("fp32", "bf16", "fp16", "int8"), _TENSORRT_OPTIONS,
              (_tensorrt_check, _tensorrt_factory)),
    )
}


def parse_backend(text: str) -> BackendSpec:
    """Parse ``NAME[:precision][@key=value,...]`` (see the module docstring)."""
    raw = text.strip()
    head, _, option_text = raw.partition("@")
    name, _, precision_text = head.partition(":")
    name = name.strip().lower()
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
        )
    backend = BACKENDS[name]
    precision = None
    if precision_text:
        try:
            precision = canonical_precision(precision_text)
        except ValueError as exc:
            raise BackendUnavailableError(f"{raw}: {exc}") from None
        if precision not in backend.precisions:
            raise BackendUnavailableError(
                f"{raw}: {name} cannot run {precision}"
                f" (it runs: {', '.join(backend.precisions)})"
            )
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in option_text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip():
            raise BackendUnavailableError(f"{raw}: option {item!r} is not KEY=VALUE")
        if key not in backend.options:
            known = ", ".join(backend.options) or "none"
            raise BackendUnavailableError(f"{raw}: unknown option {key!r} (known: {known})")
        try:  # checked here, before any work, not when the runner starts
            backend.options[key][0](value)
        except ValueError as exc:
            raise BackendUnavailableError(f"{raw}: option {key}: {exc}") from None
        options[key] = value.strip()
    return BackendSpec(name, precision, options)


def parse_backend_list(text: str | list[str]) -> list[BackendSpec]:
    """Split a comma-separated list (or several) of specs; ``KEY=VALUE`` items continue the
    options of the spec before them."""
    texts = [text] if isinstance(text, str) else list(text)
    items: list[str] = []
    for chunk in texts:
        for part in filter(None, (p.strip() for p in chunk.split(","))):
            if "=" in part and "@" not in part and items:
                items[-1] += ("," if "@" in items[-1] else "@") + part
            else:
                items.append(part)
    if not items:
        raise BackendUnavailableError("no backend given")
    return [parse_backend(item) for item in items]


def check_available(name: str) -> tuple[bool, str]:
    """``(True, "")`` when backend ``name`` can run here, else ``(False, one-line reason)``."""
    try:
        return BACKENDS[name].check()
    except Exception as exc:  # a broken install must not take the listing down
        return False, f"availability check failed: {reason_line(exc)}"


def available_backends() -> list[tuple[str, bool, str]]:
    """Every backend name, whether it can run here and, if not, why."""
    return [(name, *check_available(name)) for name in BACKENDS]


def _keywords(spec: BackendSpec, threads: int | None, pin: bool | None) -> dict[str, object]:
    backend = BACKENDS[spec.name]
    keywords: dict[str, object] = {}
    if threads is not None and "threads" in backend.options:
        keywords["threads"] = threads
    if pin is not None and "pin" in backend.options:
        keywords["pin"] = pin
    for key, value in spec.options.items():
        convert, keyword = backend.options[key]
        try:
            keywords[keyword] = convert(value)
        except ValueError as exc:
            raise BackendUnavailableError(f"{spec}: option {key}: {exc}") from None
    return keywords


def create_runner(
    spec: BackendSpec | str,
    model: ModelSource,
    *,
    threads: int | None = None,
    pin: bool | None = None,
    batch_size: int = 1,
) -> Runner:
    """Build (not activate) the runner for ``spec`` on ``model``.

    ``threads`` and ``pin`` (bind intra-op threads to cores) apply to backends with such a
    setting unless the spec sets its own;
    ``batch_size`` is the batch that will be run (TensorRT builds its profile for it).
    Raises ``BackendUnavailableError`` when the backend cannot run here.
    """
    if isinstance(spec, str):
        spec = parse_backend(spec)
    ok, reason = check_available(spec.name)
    if not ok:
        raise BackendUnavailableError(f"{spec.name} is not available here: {reason}")
    keywords = _keywords(spec, threads, pin)
    if isinstance(model, (str, os.PathLike)) and not os.path.isfile(model):
        raise BackendUnavailableError(f"{spec}: model file {os.fspath(model)} does not exist")
    try:
        return BACKENDS[spec.name].factory(
            model, precision=spec.precision, batch_size=batch_size, **keywords
        )
    except ValueError as exc:
        raise BackendUnavailableError(f"{spec}: {exc}") from None


def start_runner(
    spec: BackendSpec | str,
    model: ModelSource,
    *,
    label: str,
    threads: int | None = None,
    pin: bool | None = None,
    batch_size: int = 1,
) -> Runner:
    """:func:`create_runner`, then activate it; a runtime that cannot run the model becomes
    one :class:`~graphopt.errors.GraphoptError` line naming the backend and ``label``."""
    if isinstance(spec, str):
        spec = parse_backend(spec)
    runner = create_runner(spec, model, threads=threads, pin=pin, batch_size=batch_size)
    try:
        runner.activate()
    except GraphoptError:
        raise
    except Exception as exc:
        raise GraphoptError(f"{spec} cannot run {label}: {reason_line(exc)}") from exc
    return runner
