"""The reference executor: onnxruntime on CPU with every graph optimization disabled.

Verification compares models through this oracle so that ORT's own fusions never hide or cause
a difference. Models over the protobuf limit are written to a temporary folder first.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt.errors import UnsupportedModelError
from graphopt.model_io import EXTERNAL_DATA_THRESHOLD_BYTES, has_external_data, weight_bytes

__all__ = ["ORACLE_THREADS", "make_session", "run_model", "ort_message"]

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
    options.log_severity_level = 3
    return options


def make_session(model: ir.Model, *, optimize: bool = False, threads: int = ORACLE_THREADS):
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless asked)."""
    import onnxruntime as ort

    options = _session_options(optimize, threads)
    try:
        if has_external_data(model) or weight_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES:
            with tempfile.TemporaryDirectory(prefix="graphopt-oracle-") as tmp:
                path = Path(tmp) / "model.onnx"
                ir.save(model, path, external_data="model.onnx.data")
                # ORT reads the weights into its own buffers during construction.
                return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        payload = ir.to_proto(model).SerializeToString()
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / NotImplemented types
        raise UnsupportedModelError(
            f"onnxruntime cannot run the model: {ort_message(exc)}"
        ) from exc


_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_SOURCE = re.compile(r"^/onnxruntime_src/\S+:\d+ .*?\) ")


def ort_message(exc: BaseException) -> str:
    """The first line of an onnxruntime error without its status code and C++ source prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _ORT_STATUS.sub("", text)
    return _ORT_SOURCE.sub("", text)


def run_model(session, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``session`` on ``inputs`` and return outputs by name."""
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, dict(inputs))
    return dict(zip(names, values, strict=True))
