"""The reference executor: onnxruntime on CPU with every graph optimization disabled.

Verification compares models through this oracle so that ORT's own fusions never hide or cause
a difference. Weight pre-packing is off too: onnxruntime then maps external data files in place
instead of copying the weights, so a session costs no weight memory beyond the pages it reads.

An in-memory model is handed over serialized, with its external tensors still pointing at
their files (onnxruntime maps them in place); only when the in-memory weights exceed the
protobuf limit, or external tensors live in several folders, is the model written to one
scratch folder first (one temporary copy, gone when the session is).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt import atomic
from graphopt.errors import UnsupportedModelError
from graphopt.model_io import EXTERNAL_DATA_THRESHOLD_BYTES, iter_tensors

__all__ = ["ORACLE_THREADS", "make_session", "make_file_session", "run_model", "ort_message",
           "quiet_onnxruntime"]

logger = logging.getLogger(__name__)

ORACLE_THREADS = 2


def _session_options(optimize: bool, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = _ort_severity()
    options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def _ort_severity() -> int:
    return 4 if logger.getEffectiveLevel() > logging.INFO else 2  # 4: fatal only, 2: warnings


def quiet_onnxruntime() -> None:
    """onnxruntime's own log lines (warnings on stderr) only when graphopt logs at INFO or
    below (``--verbose``, ``--debug``)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(_ort_severity())


def make_session(model: ir.Model, *, optimize: bool = False, threads: int = ORACLE_THREADS):
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless asked)."""
    import onnxruntime as ort

    quiet_onnxruntime()
    options = _session_options(optimize, threads)
    try:
        with _payload(model, options) as payload:
            return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / NotImplemented types
        raise UnsupportedModelError(
            f"onnxruntime cannot run the model: {ort_message(exc)}"
        ) from exc


def make_file_session(path: str | os.PathLike, *, threads: int = ORACLE_THREADS):
    """An oracle session on the model file at ``path`` exactly as onnxruntime reads it."""
    import onnxruntime as ort

    quiet_onnxruntime()
    options = _session_options(False, threads)
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UnsupportedModelError(
            f"onnxruntime cannot run {path}: {ort_message(exc)}"
        ) from exc


@contextlib.contextmanager
def _payload(model: ir.Model, options) -> Iterator[bytes | str]:
    """What ``InferenceSession`` is given for ``model``: serialized bytes whose external
    tensors point at their files in place, or the path of a scratch copy (see the module
    docstring). onnx-ir's own maps of those files are closed first, so that the pages the
    session reads are not counted twice."""
    folders, inline = set(), 0
    for tensor in iter_tensors(model):
        if isinstance(tensor, ir.ExternalTensor):
            folders.add(Path(tensor.base_dir or ".").resolve())
            with contextlib.suppress(BufferError):  # a pass still holds a view: keep it
                tensor.release()
        else:
            inline += tensor.nbytes
    if inline <= EXTERNAL_DATA_THRESHOLD_BYTES and len(folders) <= 1:
        if folders:
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(folders.pop()))
        yield ir.to_proto(model).SerializeToString()
        return
    with atomic.scratch_dir() as scratch:
        path = scratch / "model.onnx"
        ir.save(model, path, external_data="model.onnx.data")
        logger.debug("oracle: %d bytes of in-memory weights, written to %s", inline, scratch)
        yield str(path)


_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_SOURCE = re.compile(r"^/onnxruntime_src/\S+:\d+ .*?\) ")
_ORT_LOAD = re.compile(r"^Load model from .*? failed: ?")


def ort_message(exc: BaseException) -> str:
    """The first line of an onnxruntime error without its status code and C++ source prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _ORT_STATUS.sub("", text)
    return _ORT_LOAD.sub("", _ORT_SOURCE.sub("", text))


def run_model(session, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``session`` on ``inputs`` and return outputs by name."""
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, dict(inputs))
    except Exception as exc:  # Fail, InvalidArgument, RuntimeException ... from the kernels
        raise UnsupportedModelError(
            f"onnxruntime failed to run the model: {ort_message(exc)}"
        ) from exc
    return dict(zip(names, values, strict=True))
