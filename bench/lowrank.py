"""Low-rank splitting (the ``lowrank`` pass) on the zoo: MAC cut, validity, latency, accuracy.

Three parts, each on its own flag (all by default except ``--pays``):

``--macs``: zoo vgg19 and bvlc_alexnet after ``lossless``, then ``lowrank(energy=E)`` with
  ``only_if_faster=false`` (every conv split at the energy; ``--op-types "Conv;Gemm"`` splits
  the fully connected layers too): the MACs of the convs before and
  after, the output's cosine to the lossless model on seeded random inputs (onnxruntime,
  graph optimizations off), whether the saved model runs in onnxruntime (all optimizations on)
  and in OpenVINO (and agrees with onnxruntime), and with ``--latency`` the paired A/B
  speedup in onnxruntime (``RunnerLatencyProbe.compare``, lossless model as the baseline).
``--digits``: zoo:digits at 1.5x and 2x fewer MACs (``select=macs``, the per-layer target found
  by bisection so that the whole model's MACs fall by the factor; ranks do not depend on
  repair), accuracy on ``zoo:digits:test`` without and with ``repair=true`` (calibration:
  ``zoo:digits``, disjoint from the test split).
``--pays``: "only where it pays": ``lossless,lowrank`` with the default options (the cost
  model decides, or with ``--target ort-cpu`` the probe) on every zoo model, each compared
  paired in onnxruntime against ``lossless`` alone; the verdict must never be "slower".

Timing needs a quiet machine (no other heavy processes; 2 cores are enough):

    .venv/bin/python bench/lowrank.py --macs --latency --pays --json bench/results/lowrank.json

``--quick`` shortens every latency measurement (smoke test only: not for figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from graphopt import oracle, zoo
from graphopt.calibration import open_data
from graphopt.cost import model_cost
from graphopt.evaluate import Evaluator
from graphopt.model_io import load_model, resolve_model, save_model
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline
from graphopt.spec import build_passes
from graphopt.verify import random_inputs

MAC_MODELS = ("vgg19", "bvlc_alexnet")
DIGITS_FACTORS = (1.5, 2.0)


def _lossless(name: str):
    model = resolve_model(name)
    Pipeline(build_passes("lossless")).run(model, verify=False)
    return model


def _conv_macs(model) -> int:
    return sum(c.macs for c in model_cost(model, refresh_shapes=True).per_node
               if c.op_type == "Conv")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _first_output(session, feed) -> np.ndarray:
    return next(iter(oracle.run_model(session, feed).values()))


def _openvino_output(path: Path, feed) -> np.ndarray | str:
    try:
        import openvino as ov
    except ImportError:
        return "not installed"
    try:
        compiled = ov.Core().compile_model(str(path), "CPU")
        result = compiled.create_infer_request().infer(dict(feed))
        return np.asarray(next(iter(result.values())))
    except Exception as exc:  # report, do not stop the table
        return f"fails: {str(exc).splitlines()[0][:80]}"


def _probe(args):
    from graphopt.backends.probe import RunnerLatencyProbe

    return RunnerLatencyProbe("ort-cpu", max_seconds=3 if args.quick else 30,
                              sessions=1 if args.quick else 3)


def _comparison(comparison) -> dict:
    return {"speedup": round(comparison.speedup, 4), "ci": [round(comparison.ci_low, 4),
            round(comparison.ci_high, 4)], "verdict": comparison.verdict,
            "baseline_ms": comparison.baseline.median_ms,
            "candidate_ms": comparison.candidate.median_ms, "method": comparison.method}


def bench_macs(args) -> list[dict]:
    rows = []
    for name in args.models:
        base = _lossless(f"zoo:{name}")
        model = _lossless(f"zoo:{name}")
        spec = (f"lowrank(energy={args.energy},method={args.method},only_if_faster=false,"
                f"op_types={args.op_types})")
        start = time.perf_counter()
        (lowrank,) = build_passes(spec)
        lowrank(model)
        seconds = time.perf_counter() - start
        feed = random_inputs(base, seed=7)
        reference = _first_output(oracle.make_session(base), feed)
        output = _first_output(oracle.make_session(model), feed)
        row = {"model": name, "spec": spec, "pass_seconds": round(seconds, 1),
               "conv_macs_before": _conv_macs(base), "conv_macs_after": _conv_macs(model),
               "macs_before": model_cost(base).macs, "macs_after": model_cost(model).macs,
               "layers_split": lowrank.stats["layers_split"],
               "methods": {k: v for k, v in lowrank.stats.items() if k.startswith("split_")},
               "cosine_to_lossless": round(_cosine(reference, output), 5)}
        row["conv_mac_cut"] = round(row["conv_macs_before"] / row["conv_macs_after"], 3)
        with tempfile.TemporaryDirectory() as folder:
            path = save_model(model, Path(folder) / f"{name}_lowrank.onnx")
            try:
                optimized = oracle.make_session(load_model(path), optimize=True)
                ort_output = _first_output(optimized, feed)
                row["ort"] = f"runs, cosine to unoptimized {_cosine(output, ort_output):.6f}"
            except Exception as exc:
                row["ort"] = f"fails: {str(exc)[:80]}"
            ov = _openvino_output(path, feed)
            row["openvino"] = (ov if isinstance(ov, str)
                               else f"runs, cosine to onnxruntime {_cosine(output, ov):.6f}")
        if args.latency:
            row["ort_latency"] = _comparison(_probe(args).compare(base, model))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _digits_run(target: float, repair: bool):
    model = resolve_model("zoo:digits")
    context = PassContext(calibration=open_data("zoo:digits", model),
                          evaluator=Evaluator(open_data("zoo:digits:test", model)))
    spec = f"lossless,lowrank(select=macs,target_macs={target:.4f},repair={str(repair).lower()})"
    report = Pipeline(build_passes(spec)).run(model, context=context)
    return report, spec


def bench_digits(args) -> list[dict]:
    rows = []
    for factor in DIGITS_FACTORS:
        low, high = 0.05, 0.95  # per-layer target: smaller cuts more
        for _ in range(7):
            middle = (low + high) / 2
            report, _ = _digits_run(middle, repair=False)
            reduction = report.input_cost.macs / report.output_cost.macs
            low, high = (middle, high) if reduction >= factor else (low, middle)
        target = low
        for repair in (False, True):
            report, spec = _digits_run(target, repair)
            rows.append({
                "model": "zoo:digits", "spec": spec, "mac_reduction": round(
                    report.input_cost.macs / report.output_cost.macs, 3),
                "accuracy_before": report.accuracy_before,
                "accuracy_after": report.passes[-1].accuracy,
                "sqnr_db": report.fidelity.sqnr_db if report.fidelity else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_pays(args) -> list[dict]:
    rows = []
    probe = _probe(args)
    context = PassContext(latency=probe) if args.target else PassContext()
    for name in args.pays_models:
        base = _lossless(f"zoo:{name}")
        model = _lossless(f"zoo:{name}")
        (lowrank,) = build_passes("lowrank")
        lowrank.with_context(context)
        modified = lowrank(model).modified
        row = {"model": name, "decided_by": args.target or "cost model",
               "layers_split": lowrank.stats.get("layers_split", 0),
               "macs_ratio": round(model_cost(model, refresh_shapes=True).macs
                                   / model_cost(base).macs, 3)}
        if modified:
            row["ort_latency"] = _comparison(probe.compare(base, model))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--macs", action="store_true")
    parser.add_argument("--digits", action="store_true")
    parser.add_argument("--pays", action="store_true")
    parser.add_argument("--latency", action="store_true", help="paired ORT A/B in --macs")
    parser.add_argument("--models", default=",".join(MAC_MODELS))
    parser.add_argument("--energy", type=float, default=0.5)
    parser.add_argument("--method", default="auto")
    parser.add_argument("--op-types", default="Conv", help="layers --macs splits (Conv;Gemm)")
    parser.add_argument("--target", default=None, help="probe target for --pays (ort-cpu)")
    parser.add_argument("--pays-models", default=",".join((*zoo.LIGHT_MODELS, "digits")))
    parser.add_argument("--quick", action="store_true", help="short timings (smoke test)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.pays_models = [m for m in args.pays_models.split(",") if m]
    if not (args.macs or args.digits or args.pays):
        args.macs = args.digits = True
    results = {}
    if args.macs:
        results["macs"] = bench_macs(args)
    if args.digits:
        results["digits"] = bench_digits(args)
    if args.pays:
        results["pays"] = bench_pays(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
