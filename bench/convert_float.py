"""Float conversion: graphopt's ``fp16`` preset against onnxconverter-common.

For each model (the nine zoo architectures plus the real models in ``../shared/models``):
the model goes through graphopt's ``cleanup`` and ``fuse`` once (the starting graph for both
converters, so the comparison is of the conversion alone), then through
``convert_float(to=fp16)`` (ours, the rest of the ``fp16`` preset) and through
``onnxconverter_common.float16.convert_float_to_float16(model, keep_io_types=True)`` (theirs).
Reported per model:

- Cast nodes in each result;
- SQNR (dB) of the outputs against the fp32 original in the oracle (onnxruntime CPU, graph
  optimizations off), signal and noise pooled over ``--inputs`` seeded random inputs
  (``graphopt.verify.random_inputs``, seeds 0..N-1): one input alone moves SQNR by several dB
  because rounding errors of different layers partly cancel;
- serialized size of each result over the fp32 input model's;
- nodes ours keeps fp32 (those of the fp32 stem in brackets) and the stem's share of the
  weight bytes;
- whether ours runs in onnxruntime (graph optimizations off) and compiles and runs in OpenVINO
  (CPU, default configuration), and ours' SQNR in OpenVINO with ``INFERENCE_PRECISION_HINT=f32``
  (the default on CPUs with bf16 units is bf16 compute whatever the graph says).

``--preset bf16`` measures graphopt's ``bf16`` preset instead (onnxconverter-common has no
bfloat16 converter, its columns are empty); ``--spec`` measures any spec, e.g.
``cleanup,fuse,convert_float(fp32_stem=0)``.

Usage::

    python bench/convert_float.py [--models resnet50,squeezenet] [--inputs 8] [--preset fp16]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from graphopt import oracle, zoo
from graphopt.model_io import load_model, resolve_model
from graphopt.spec import build_passes, parse_spec
from graphopt.verify import compare_outputs, random_inputs

__all__ = ["ZOO_MODELS", "REAL_MODELS", "ModelResult", "benchmark_model", "main"]

logger = logging.getLogger("bench.convert_float")

ZOO_MODELS = zoo.LIGHT_MODELS
SHARED_MODELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"
REAL_MODELS = ("superres-10", "ultraface-rfb320")
DEFAULT_INPUTS = 16
PREPARE = ("cleanup", "fuse")  # the preset's passes before convert_float


@dataclasses.dataclass
class ModelResult:
    model: str
    casts_ours: int
    casts_theirs: int | None
    sqnr_ours: float
    sqnr_theirs: float | None
    size_ours: float
    size_theirs: float | None
    ort_runs: bool
    openvino_runs: bool | str
    sqnr_openvino: float | None
    kept_fp32: int
    stem: int
    stem_share: float
    stats: dict[str, int]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("sqnr_ours", "sqnr_theirs", "sqnr_openvino"):
            if data[key] is not None and math.isinf(data[key]):
                data[key] = "inf"
        return data


def _load(name: str) -> ir.Model:
    if name in REAL_MODELS:
        return load_model(next((SHARED_MODELS_DIR / name).glob("*.onnx")))
    return resolve_model(f"zoo:{name}")


def _pooled(model: ir.Model, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs on every feed, concatenated along the first axis (for pooled SQNR)."""
    session = oracle.make_session(model)
    runs = [oracle.run_model(session, feed) for feed in feeds]
    return {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}


def _openvino(payload: bytes, feeds, reference) -> tuple[bool | str, float | None]:
    """Does OpenVINO compile and run the model (defaults), and its SQNR with f32 compute."""
    try:
        import openvino as ov
    except ImportError:
        return "not installed", None
    core = ov.Core()
    try:
        compiled = core.compile_model(core.read_model(payload, b""), "CPU")
        compiled(list(feeds[0].values()))
        exact = core.compile_model(
            core.read_model(payload, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        names = [port.get_any_name() for port in exact.outputs]
        runs = [exact(list(feed.values())) for feed in feeds]
    except Exception as exc:  # OpenVINO raises RuntimeError with a long C++ trace
        return f"no: {str(exc).strip().splitlines()[0][:80]}", None
    outputs = {
        name: np.concatenate([np.asarray(run[i]) for run in runs]) for i, name in enumerate(names)
    }
    if set(outputs) != set(reference):
        return True, None
    return True, compare_outputs(reference, outputs).sqnr_db


def _casts(model: ir.Model | onnx.ModelProto) -> int:
    nodes = model.graph.node if isinstance(model, onnx.ModelProto) else model.graph
    return sum(1 for node in nodes if node.op_type == "Cast")


def _theirs(prepared: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every clamped tensor
        return float16.convert_float_to_float16(prepared, keep_io_types=True)


def benchmark_model(
    name: str, *, inputs: int = DEFAULT_INPUTS, preset: str = "fp16", theirs: bool = True
) -> ModelResult:
    """Ours (the ``preset`` spec) and theirs (when ``theirs``) on model ``name``."""
    original = _load(name)
    input_size = len(ir.to_proto(original).SerializeToString())
    feeds = [random_inputs(original, seed=seed) for seed in range(inputs)]
    reference = _pooled(original, feeds)

    passes = build_passes(preset)
    prepare = [p for p in passes if p.name in PREPARE]
    convert = [p for p in passes if p.name not in PREPARE]
    for graph_pass in prepare:
        graph_pass(original)
    prepared = ir.to_proto(original)
    weights = sum(v.const_value.nbytes for v in original.graph.initializers.values()
                  if v.dtype == ir.DataType.FLOAT and v.const_value is not None)

    ours = ir.from_proto(prepared)
    stats: collections.Counter[str] = collections.Counter()
    for graph_pass in convert:
        graph_pass(ours)
        stats.update(graph_pass.stats)
    payload = ir.to_proto(ours).SerializeToString()
    try:
        sqnr_ours = compare_outputs(reference, _pooled(ours, feeds)).sqnr_db
        ort_runs = True
    except Exception as exc:  # UnsupportedModelError: onnxruntime has no kernel
        logger.warning("%s: onnxruntime cannot run ours: %s", name, exc)
        sqnr_ours, ort_runs = math.nan, False
    openvino_runs, sqnr_openvino = _openvino(payload, feeds, reference)

    casts_theirs = sqnr_theirs = size_theirs = None
    if theirs:
        converted = _theirs(prepared)
        casts_theirs = _casts(converted)
        sqnr_theirs = compare_outputs(reference, _pooled(ir.from_proto(converted), feeds)).sqnr_db
        size_theirs = len(converted.SerializeToString()) / input_size
    return ModelResult(
        model=name,
        casts_ours=_casts(ours),
        casts_theirs=casts_theirs,
        sqnr_ours=sqnr_ours,
        sqnr_theirs=sqnr_theirs,
        size_ours=len(payload) / input_size,
        size_theirs=size_theirs,
        ort_runs=ort_runs,
        openvino_runs=openvino_runs,
        sqnr_openvino=sqnr_openvino,
        kept_fp32=stats.get("nodes_kept_fp32", 0),
        stem=stats.get("kept_fp32_stem", 0),
        stem_share=stats.get("stem_weight_bytes", 0) / weights if weights else 0.0,
        stats=dict(stats),
    )


def _db(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _pair(ours, theirs, fmt) -> str:
    return f"{fmt(ours)} / {fmt(theirs)}"


def format_table(results: list[ModelResult], preset: str) -> str:
    header = (
        "| model | Casts ours / theirs | SQNR dB ours / theirs | size ours / theirs (x fp32)"
        " | ORT runs ours | OpenVINO runs ours | OpenVINO f32 SQNR ours"
        " | kept fp32 (stem) | stem share of weights |"
    )
    lines = [f"ours: {preset}; theirs: onnxconverter-common keep_io_types=True", header,
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        openvino = "yes" if r.openvino_runs is True else str(r.openvino_runs)
        lines.append(
            f"| {r.model} | {_pair(r.casts_ours, r.casts_theirs, _count)}"
            f" | {_pair(r.sqnr_ours, r.sqnr_theirs, _db)}"
            f" | {_pair(r.size_ours, r.size_theirs, _ratio)}"
            f" | {'yes' if r.ort_runs else 'no'} | {openvino} | {_db(r.sqnr_openvino)}"
            f" | {r.kept_fp32} ({r.stem}) | {r.stem_share:.2%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO_MODELS + REAL_MODELS))
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS,
                        help="seeded random inputs pooled for SQNR")
    parser.add_argument("--preset", default="fp16", choices=("fp16", "bf16"))
    parser.add_argument("--spec", help="measure this pipeline spec instead of the preset's"
                        " (its cleanup and fuse prepare the graph for both converters)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    spec = args.spec or args.preset
    parse_spec(spec)  # a bad spec fails before any model loads
    results = []
    for name in names:
        result = benchmark_model(name, inputs=args.inputs, preset=spec,
                                 theirs=args.preset == "fp16")
        print(f"{name}: done", file=sys.stderr, flush=True)
        results.append(result)
    print(format_table(results, spec))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
