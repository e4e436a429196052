"""Node counts and simplification time: graphopt ``lossless`` against the peer tools.

For each model (the nine zoo architectures plus the real models in ``../shared/models``), in one
run: graphopt's ``lossless`` pipeline (``Pipeline.run(model, verify=False)``; and end to end:
parse, protobuf -> IR, pipeline, IR -> protobuf), onnxsim (``onnxsim.simplify``), onnxslim
(``onnxslim.slim``), the onnxscript optimizer (``onnxscript.optimizer.optimize``) and
onnxruntime's basic-level optimized graph (``SessionOptions.optimized_model_filepath`` with
``ORT_ENABLE_BASIC``; its time is the whole session construction). Node counts are of
standard-domain operators only (com.microsoft fused ops are not counted). Times are the median
of ``--repeats`` runs on a fresh copy of the model, after every tool has run once on a tiny
model (imports are not timed); the cost of graphopt's verification (one
run with ``verify=True``) is measured separately.

Usage::

    python bench/fusion_nodes.py [--models squeezenet,resnet50] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx_ir as ir

from graphopt import zoo
from graphopt.pipeline import Pipeline

__all__ = ["ZOO_MODELS", "REAL_MODELS", "ModelResult", "benchmark_model", "main"]

logger = logging.getLogger("bench.fusion_nodes")

ZOO_MODELS = (
    "squeezenet",
    "shufflenet",
    "resnet50",
    "inception_v1",
    "inception_v2",
    "densenet121",
    "vgg19",
    "bvlc_alexnet",
    "zfnet512",
)
SHARED_MODELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"
REAL_MODELS = ("superres-10", "ultraface-rfb320")
DEFAULT_REPEATS = 3
TABLE_WIDTH = 160
PRESET = "lossless"
WARM_UP_MODEL = "tiny_cnn"
_STANDARD_DOMAINS = ("", "ai.onnx")
TOOLS = ("graphopt", "onnxsim", "onnxslim", "onnxscript", "ort_basic")

ToolFn = Callable[[bytes], onnx.ModelProto]


@dataclasses.dataclass
class ToolResult:
    nodes: int | None
    seconds: float | None
    error: str | None = None


@dataclasses.dataclass
class ModelResult:
    model: str
    original_nodes: int
    tools: dict[str, ToolResult]
    graphopt_end_to_end_seconds: float
    graphopt_verify_seconds: float | None
    graphopt_pass_seconds: dict[str, float]

    @property
    def speed_ratio(self) -> float | None:
        """onnxsim seconds / graphopt seconds (> 1: graphopt is faster)."""
        sim, ours = self.tools["onnxsim"].seconds, self.tools["graphopt"].seconds
        return sim / ours if sim and ours else None

    @property
    def end_to_end_ratio(self) -> float | None:
        """onnxsim seconds / graphopt end-to-end seconds (parse, IR both ways, pipeline)."""
        sim, ours = self.tools["onnxsim"].seconds, self.graphopt_end_to_end_seconds
        return sim / ours if sim and ours else None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "original_nodes": self.original_nodes,
            "tools": {k: dataclasses.asdict(v) for k, v in self.tools.items()},
            "graphopt_end_to_end_seconds": self.graphopt_end_to_end_seconds,
            "graphopt_verify_seconds": self.graphopt_verify_seconds,
            "graphopt_pass_seconds": self.graphopt_pass_seconds,
            "onnxsim_over_graphopt": self.speed_ratio,
            "onnxsim_over_graphopt_end_to_end": self.end_to_end_ratio,
        }


def standard_node_count(model: onnx.ModelProto | ir.Model) -> int:
    """Nodes of the main graph in the standard ONNX domain."""
    if isinstance(model, ir.Model):
        return sum(1 for node in model.graph if node.domain in _STANDARD_DOMAINS)
    return sum(1 for node in model.graph.node if node.domain in _STANDARD_DOMAINS)


def model_paths(names: list[str]) -> dict[str, Path]:
    """Files for the requested models: zoo names or the real-model folder names."""
    paths: dict[str, Path] = {}
    for name in names:
        if name in REAL_MODELS:
            paths[name] = next((SHARED_MODELS_DIR / name).glob("*.onnx"))
        else:
            paths[name] = zoo.path(name)
    return paths


# ----------------------------------------------------------------------------- the tools


def _run_graphopt(payload: bytes) -> tuple[ir.Model, float, float, dict[str, float]]:
    """(model, pipeline seconds, end-to-end seconds, seconds per pass).

    End to end is what a peer's time covers plus graphopt's own conversions: parse the bytes,
    protobuf -> IR, the pipeline (with its cost statistics), IR -> protobuf.
    """
    start = time.perf_counter()
    model = ir.from_proto(onnx.load_from_string(payload))
    loaded = time.perf_counter()
    report = Pipeline.from_spec(PRESET).run(model, verify=False)
    done = time.perf_counter()
    ir.to_proto(model)
    end = time.perf_counter()
    per_pass = {record.name: record.seconds for record in report.passes}
    return model, done - loaded, end - start, per_pass


def _run_onnxsim(payload: bytes) -> onnx.ModelProto:
    import onnxsim

    simplified, _ = onnxsim.simplify(onnx.load_from_string(payload), check_n=0)
    return simplified


def _run_onnxslim(payload: bytes) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(onnx.load_from_string(payload))


def _run_onnxscript(payload: bytes) -> onnx.ModelProto:
    from onnxscript import optimizer

    return optimizer.optimize(onnx.load_from_string(payload))


def _run_ort_basic(payload: bytes) -> onnx.ModelProto:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="graphopt-bench-") as tmp:
        target = Path(tmp) / "basic.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3
        ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        return onnx.load(target, load_external_data=False)


_PEERS: dict[str, ToolFn] = {
    "onnxsim": _run_onnxsim,
    "onnxslim": _run_onnxslim,
    "onnxscript": _run_onnxscript,
    "ort_basic": _run_ort_basic,
}


def _time_peer(fn: ToolFn, payload: bytes, repeats: int) -> ToolResult:
    seconds: list[float] = []
    nodes = None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = fn(payload)
        except Exception as exc:  # a peer failing on a model is a result, not a crash
            logger.warning("%s failed: %s", fn.__name__, exc)
            return ToolResult(None, None, f"{type(exc).__name__}: {str(exc)[:120]}")
        seconds.append(time.perf_counter() - start)
        nodes = standard_node_count(result)
        del result
    return ToolResult(nodes, statistics.median(seconds))


def _time_graphopt(payload: bytes, repeats: int) -> tuple[ToolResult, float, dict[str, float]]:
    """graphopt's result (pipeline seconds), median end-to-end seconds, seconds of each pass."""
    seconds: list[float] = []
    end_to_end: list[float] = []
    per_pass: dict[str, list[float]] = {}
    nodes = None
    for _ in range(repeats):
        model, run_seconds, total_seconds, passes = _run_graphopt(payload)
        seconds.append(run_seconds)
        end_to_end.append(total_seconds)
        for name, value in passes.items():
            per_pass.setdefault(name, []).append(value)
        nodes = standard_node_count(model)
    pass_medians = {name: statistics.median(values) for name, values in per_pass.items()}
    result = ToolResult(nodes, statistics.median(seconds))
    return result, statistics.median(end_to_end), pass_medians


def _verify_seconds(payload: bytes, pass_seconds: float) -> float:
    model = ir.from_proto(onnx.load_from_string(payload))
    start = time.perf_counter()
    Pipeline.from_spec(PRESET).run(model, verify=True)
    return max(time.perf_counter() - start - pass_seconds, 0.0)


def warm_up(tools: tuple[str, ...]) -> None:
    """Import every tool and run it once on a tiny model so no timing pays for imports."""
    payload = zoo.path(WARM_UP_MODEL).read_bytes()
    if "graphopt" in tools:
        _run_graphopt(payload)
    for tool, fn in _PEERS.items():
        if tool in tools:
            _time_peer(fn, payload, 1)


def benchmark_model(name: str, path: Path, *, repeats: int, tools: tuple[str, ...]) -> ModelResult:
    """Run every tool on one model file."""
    payload = path.read_bytes()
    original = standard_node_count(onnx.load_from_string(payload))
    results: dict[str, ToolResult] = {}
    end_to_end, verify_seconds, pass_seconds = 0.0, None, {}
    if "graphopt" in tools:
        results["graphopt"], end_to_end, pass_seconds = _time_graphopt(payload, repeats)
        logger.info(
            "%s: graphopt %s nodes in %.3fs",
            name,
            results["graphopt"].nodes,
            results["graphopt"].seconds,
        )
        verify_seconds = _verify_seconds(payload, results["graphopt"].seconds)
    for tool, fn in _PEERS.items():
        if tool in tools:
            results[tool] = _time_peer(fn, payload, repeats)
            logger.info("%s: %s %s nodes", name, tool, results[tool].nodes)
    return ModelResult(name, original, results, end_to_end, verify_seconds, pass_seconds)


# ---------------------------------------------------------------------------- reporting


def _cell(result: ToolResult | None, best: int | None) -> str:
    if result is None:
        return "-"
    if result.nodes is None:
        return "error"
    text = str(result.nodes)
    return f"[bold]{text}[/bold]" if result.nodes == best else text


def render_table(results: list[ModelResult]):
    """A rich table of node counts and the onnxsim/graphopt speed ratio."""
    from rich.table import Table

    table = Table(title=f"graphopt {PRESET} vs peers: standard-domain nodes and seconds")
    table.add_column("model")
    table.add_column("original", justify="right")
    for tool in TOOLS:
        table.add_column(tool, justify="right")
    table.add_column("graphopt s", justify="right")
    table.add_column("(fuse s)", justify="right")
    table.add_column("onnxsim s", justify="right")
    table.add_column("onnxsim/graphopt", justify="right")
    table.add_column("e2e s", justify="right")
    table.add_column("onnxsim/e2e", justify="right")
    table.add_column("verify s", justify="right")
    for result in results:
        counts = [r.nodes for r in result.tools.values() if r.nodes is not None]
        best = min(counts) if counts else None
        ours, sim = result.tools.get("graphopt"), result.tools.get("onnxsim")
        table.add_row(
            result.model,
            str(result.original_nodes),
            *(_cell(result.tools.get(tool), best) for tool in TOOLS),
            _seconds(ours),
            _optional_seconds(result.graphopt_pass_seconds.get("fuse")),
            _seconds(sim),
            f"{result.speed_ratio:.1f}x" if result.speed_ratio else "-",
            _optional_seconds(result.graphopt_end_to_end_seconds or None),
            f"{result.end_to_end_ratio:.1f}x" if result.end_to_end_ratio else "-",
            _optional_seconds(result.graphopt_verify_seconds),
        )
    return table


def _seconds(result: ToolResult | None) -> str:
    return _optional_seconds(None if result is None else result.seconds)


def _optional_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _environment() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("onnx", "onnx-ir", "onnxruntime", "onnxsim", "onnxslim", "onnxscript"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join((*ZOO_MODELS, *REAL_MODELS)))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--json", type=Path, default=None, help="write results to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("onnx_ir", "onnxscript", "onnxslim", "graphopt"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    tools = tuple(t for t in args.tools.split(",") if t)
    names = [n for n in args.models.split(",") if n]
    warm_up(tools)
    results = [
        benchmark_model(name, path, repeats=args.repeats, tools=tools)
        for name, path in model_paths(names).items()
    ]
    from rich.console import Console

    Console(width=TABLE_WIDTH).print(render_table(results))
    if args.json is not None:
        payload = {
            "preset": PRESET,
            "repeats": args.repeats,
            "timing": "median seconds; graphopt = Pipeline.run(verify=False) pass time, peers ="
            " proto in -> proto out, ort_basic = session construction",
            "versions": _environment(),
            "models": [r.to_dict() for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2))
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
