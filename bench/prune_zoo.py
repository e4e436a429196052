"""Structured pruning on the zoo: MACs, params, validity in ORT and OpenVINO, latency in ORT.

For each model: the ``lossless`` pipeline, then ``prune(...)`` (default ``ratio=0.3``) with
seeded random calibration data; reported: MACs and params before and after (graphopt's cost
model), output SQNR and top-1 agreement on held-out random inputs, whether the saved model runs
in onnxruntime (all optimizations) and OpenVINO with the original output shapes, and with
``--latency`` the paired onnxruntime speedup of the pruned model over the lossless one
(``graphopt bench``'s A/B method; run with nothing else on the machine).

    .venv/bin/python bench/prune_zoo.py [--models a,b] [--spec "prune(ratio=0.3)"] [--latency]
        [--json bench/results/prune_zoo.json] [--keep DIR]
    .venv/bin/python bench/prune_zoo.py --latency-only DIR   # time models kept by --keep
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.calibration import RandomData
from graphopt.cost import model_cost
from graphopt.model_io import load_model, resolve_model, save_model
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).parent))
from lossy_presets import _runs_in_openvino  # noqa: E402  (one checker for both benches)

MODELS = ("resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet",
          "shufflenet", "vgg19")


def _output_shapes(model: ir.Model) -> list[tuple]:
    return [tuple(v.shape) if v.shape is not None else None for v in model.graph.outputs]


def _ort_shapes(path: Path, model: ir.Model) -> list[tuple]:
    session = oracle.make_session(model, optimize=True)
    feed = next(iter(RandomData(model, batches=1, seed=7)))
    return [tuple(o.shape) for o in session.run(None, dict(feed))]


def _latency(baseline: ir.Model, candidate: ir.Model) -> dict:
    from graphopt.backends.probe import RunnerLatencyProbe

    probe = RunnerLatencyProbe("ort-cpu", max_seconds=20)
    comparison = probe.compare(baseline, candidate)
    return {"speedup": comparison.speedup, "ci": [comparison.ci_low, comparison.ci_high],
            "baseline_ms": comparison.baseline.median_ms,
            "candidate_ms": comparison.candidate.median_ms,
            "method": comparison.method}


def run_one(name: str, spec: str, scratch: Path, latency: bool) -> dict:
    model = resolve_model(f"zoo:{name}")
    Pipeline.from_spec("lossless").run(model, verify=False)
    lossless = ir.from_proto(ir.to_proto(model))
    save_model(lossless, scratch / f"{name}.lossless.onnx")
    before = model_cost(model)
    shapes = _output_shapes(model)
    context = PassContext(calibration=RandomData(model, batches=8, seed=1))
    start = time.perf_counter()
    report = Pipeline.from_spec(spec).run(model, inputs=RandomData(model, batches=4, seed=100),
                                          context=context, on_budget="warn")
    seconds = time.perf_counter() - start
    after = model_cost(model, refresh_shapes=True)
    path = save_model(model, scratch / f"{name}.pruned.onnx")
    fidelity = report.fidelity
    row = {
        "model": name, "spec": spec, "seconds": round(seconds, 1),
        "macs_before": before.macs, "macs_after": after.macs,
        "macs_ratio": after.macs / before.macs,
        "params_before": before.params, "params_after": after.params,
        "sqnr_db": None if math.isinf(fidelity.sqnr_db) else fidelity.sqnr_db,
        "top1_agreement": fidelity.top1_agreement,
        "output_shapes_kept": _ort_shapes(path, model) == [tuple(s) for s in shapes],
        "runs_in_openvino": _runs_in_openvino(path),
    }
    if latency:
        row["ort_latency"] = _latency(lossless, model)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--spec", default="prune(ratio=0.3)")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the lossless and pruned models here")
    parser.add_argument("--latency-only", type=Path, metavar="DIR",
                        help="only measure the latency of models kept by an earlier --keep run")
    args = parser.parse_args()
    if args.latency_only:
        for name in args.models.split(","):
            lat = _latency(load_model(args.latency_only / f"{name}.lossless.onnx"),
                           load_model(args.latency_only / f"{name}.pruned.onnx"))
            print(f"{name:<13} ORT speedup {lat['speedup']:.2f}x ({lat['ci'][0]:.2f}-"
                  f"{lat['ci'][1]:.2f}), {lat['baseline_ms']:.1f} -> {lat['candidate_ms']:.1f} ms"
                  f" ({lat['method']})", flush=True)
        return
    rows = []
    print(f"{'model':<13} {'MACs':>7} {'params':>7} {'SQNR':>6} {'top1':>5} {'shapes':>6}"
          f" {'openvino':>8} {'ORT speedup (95% CI)':>24}")
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            row = run_one(name, args.spec, scratch, args.latency)
            rows.append(row)
            lat = row.get("ort_latency")
            speed = (f"{lat['speedup']:.2f}x ({lat['ci'][0]:.2f}-{lat['ci'][1]:.2f})"
                     if lat else "-")
            sqnr = "inf" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}"
            print(f"{name:<13} {row['macs_ratio']:>6.2f}x"
                  f" {row['params_after'] / row['params_before']:>6.2f}x {sqnr:>6}"
                  f" {row['top1_agreement']:>5.2f} {str(row['output_shapes_kept']):>6}"
                  f" {row['runs_in_openvino'][:8]:>8} {speed:>24}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "numpy": np.__version__}, indent=1))


if __name__ == "__main__":
    main()
