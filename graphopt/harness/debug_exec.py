"""Running the variants of a prepared model on one backend, one session at a time.

The reference executor is graphopt's oracle (onnxruntime on CPU, graph optimizations off)
unless a backend spec is given; any backend of :mod:`graphopt.backends.registry` runs the
variant file written beside the model's weights. Each :meth:`Executor.run` builds the
session, runs every feed, and drops the session before returning, so at most one session of
a debugging run is alive at any time. ``runs`` counts the variants run (a run is all feeds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from graphopt import oracle
from graphopt.backends.registry import BackendSpec, start_runner
from graphopt.harness.debug_graph import PreparedModel

__all__ = ["Executor", "ORACLE_LABEL"]

logger = logging.getLogger(__name__)

ORACLE_LABEL = "reference onnxruntime (CPU, graph optimizations off)"


class Executor:
    """Runs variants of ``prepared`` on ``backend`` (``None``: the oracle)."""

    def __init__(self, prepared: PreparedModel, backend: BackendSpec | None = None,
                 *, threads: int | None = None) -> None:
        self.prepared = prepared
        self.backend = backend
        self.threads = threads
        self.runs = 0

    @property
    def label(self) -> str:
        return ORACLE_LABEL if self.backend is None else str(self.backend)

    def run(self, proto: onnx.ModelProto,
            feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """``proto``'s outputs for each feed (each feed restricted to the variant's inputs)."""
        self.runs += 1
        wanted = {i.name for i in proto.graph.input} - {t.name for t in proto.graph.initializer}
        feeds = [{k: v for k, v in feed.items() if k in wanted} for feed in feeds]
        if self.backend is None:
            model = ir.serde.deserialize_model(proto)
            ir.external_data.set_base_dir(model.graph, self.prepared.folder)
            session = oracle.make_session(model)
            del model
            try:
                return [oracle.run_model(session, feed) for feed in feeds]
            finally:
                del session
        path = self.prepared.write(proto, f"{self.prepared.label}.variant.onnx")
        runner = start_runner(self.backend, path, label=self.prepared.label,
                              threads=self.threads)
        try:
            return [runner.infer(feed) for feed in feeds]
        finally:
            runner.deactivate()
            path.unlink(missing_ok=True)
