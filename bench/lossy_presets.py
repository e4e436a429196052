"""Every lossy preset (and a lossless pass after a lossy one) on every zoo model and the real
models: does it run, what does it cost in fidelity, what does it save in size.

For each model and pipeline: ``Pipeline.run`` with verification after every pass (lossless
passes judged on their step, see ``graphopt.pipeline``), on held-out inputs the calibration
never saw (seeded random inputs for the zoo, the real photo or image for ../shared/models),
with calibration data for ``int8`` (seeded random batches unless ``--calib`` is given). Then
the output is saved and loaded in onnxruntime and OpenVINO. Printed per row: nodes, stored
size relative to the input, the cumulative SQNR and top-1 agreement of the final model, the
worst step error of a lossless pass that ran after a lossy one, and whether ORT and OpenVINO
ran the saved model.

    .venv/bin/python bench/lossy_presets.py [--models resnet50,squeezenet] [--json out.json]
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

from graphopt import zoo
from graphopt.calibration import RandomData
from graphopt.errors import GraphoptError
from graphopt.model_io import load_model, resolve_model, save_model, stored_size_bytes
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
PIPELINES = ("cleanup,convert_float,fuse", "fp16", "bf16", "int8")
REAL_MODELS = {
    "superres-10": SHARED / "superres-10" / "super-resolution-10.onnx",
    "ultraface-rfb320": SHARED / "ultraface-rfb320" / "ultraface-rfb320.onnx",
}


def _runs_in_openvino(path: Path) -> str:
    try:
        import openvino as ov
    except ImportError:
        return "not installed"
    try:
        compiled = ov.Core().compile_model(str(path), "CPU")
        request = compiled.create_infer_request()
        feeds = {}
        for port in compiled.inputs:
            shape = [d if d > 0 else 1 for d in port.get_partial_shape().get_min_shape()]
            feeds[port.any_name] = np.zeros(shape, np.float32)
        request.infer(feeds)
        return "yes"
    except Exception as exc:  # report, do not stop the table
        return f"no: {str(exc).splitlines()[0][:60]}"


def _runs_in_ort(path: Path) -> str:
    from graphopt import oracle

    try:
        oracle.make_session(load_model(path), optimize=True)
        return "yes"
    except GraphoptError as exc:
        return f"no: {str(exc)[:60]}"


def _model_specs(names: list[str]) -> dict[str, str]:
    specs = {}
    for name in names:
        if name in REAL_MODELS:
            path = REAL_MODELS[name]
            if path.exists():
                specs[name] = str(path)
            else:
                print(f"skipping {name}: {path} not found", file=sys.stderr)
        else:
            specs[name] = f"zoo:{name}"
    return specs


def run_one(spec: str, pipeline: str, scratch: Path) -> dict:
    model = resolve_model(spec)
    input_size = stored_size_bytes(spec, model)
    context = PassContext(calibration=RandomData(model, batches=8, seed=1))
    start = time.perf_counter()
    report = Pipeline.from_spec(pipeline).run(
        model, inputs=RandomData(model, batches=4, seed=100), context=context)
    seconds = time.perf_counter() - start
    path = save_model(model, scratch / f"{abs(hash((spec, pipeline)))}.onnx")
    after_lossy = [r for r in report.passes if r.lossless and r.modified
                   and any(not p.lossless for p in report.passes[:report.passes.index(r)])]
    step = max((r.step_fidelity.max_rel for r in after_lossy), default=None)
    fidelity = report.fidelity
    return {
        "model": spec, "pipeline": pipeline, "seconds": round(seconds, 2),
        "nodes_before": report.input_cost.nodes, "nodes_after": report.output_cost.nodes,
        "size_ratio": stored_size_bytes(path) / input_size,
        "sqnr_db": None if math.isinf(fidelity.sqnr_db) else fidelity.sqnr_db,
        "top1_agreement": fidelity.top1_agreement,
        "lossless_step_after_lossy_max_rel": step,
        "runs_in_ort": _runs_in_ort(path), "runs_in_openvino": _runs_in_openvino(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join([*zoo.LIGHT_MODELS, *REAL_MODELS]))
    parser.add_argument("--pipelines", default=";".join(PIPELINES),
                        help="pipelines separated by ';'")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'model':<18} {'pipeline':<28} {'nodes':>9} {'size':>6} {'SQNR dB':>8}"
          f" {'top-1':>6} {'step rel':>9} {'ORT':>4} {'OpenVINO':>8} {'s':>6}")
    with tempfile.TemporaryDirectory(prefix="graphopt-presets-") as tmp:
        for name, spec in _model_specs(args.models.split(",")).items():
            for pipeline in args.pipelines.split(";"):
                try:
                    row = run_one(spec, pipeline, Path(tmp))
                except GraphoptError as exc:
                    row = {"model": spec, "pipeline": pipeline, "error": str(exc)}
                    print(f"{name:<18} {pipeline:<28} FAILED: {exc}")
                    rows.append(row)
                    continue
                rows.append(row)
                sqnr = "inf" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}"
                top1 = "-" if row["top1_agreement"] is None else f"{row['top1_agreement']:.0%}"
                step = row["lossless_step_after_lossy_max_rel"]
                print(f"{name:<18} {pipeline:<28}"
                      f" {row['nodes_before']:>4}>{row['nodes_after']:<4}"
                      f" {row['size_ratio']:>5.2f}x {sqnr:>8} {top1:>6}"
                      f" {'-' if step is None else f'{step:.1e}':>9}"
                      f" {row['runs_in_ort'][:4]:>4} {row['runs_in_openvino'][:8]:>8}"
                      f" {row['seconds']:>6.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    failed = [r for r in rows if "error" in r or r["runs_in_ort"] != "yes"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
