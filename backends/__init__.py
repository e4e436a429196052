"""Runtimes behind one Runner interface, timing and energy meters.

Runners (:mod:`graphopt.backends.ort`, :mod:`graphopt.backends.openvino`,
:mod:`graphopt.backends.tensorrt`) import their runtime lazily: importing this package needs
nothing beyond numpy. Backend names (``ort-cpu``, ``openvino-cpu:bf16`` ...) live in
:mod:`graphopt.backends.registry`; timed runner sessions in :mod:`graphopt.backends.benchmark`
(the benchmark itself, above core and backends, is :mod:`graphopt.harness.benchmark`).
"""

from __future__ import annotations

__all__: list[str] = []
