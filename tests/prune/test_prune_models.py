"""prune end to end: the CLI on zoo:digits (task accuracy, repair against none) and a zoo net."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir

from graphopt import oracle
from graphopt.calibration import RandomData
from graphopt.cost import model_cost
from graphopt.model_io import resolve_model
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline


def _prune_digits(run_cli, tmp_path, spec):
    out = tmp_path / "digits.pruned.onnx"
    code, stdout, err = run_cli("optimize", "zoo:digits", "--passes", f"lossless,{spec}",
                                "--calib", "zoo:digits", "-o", str(out), "--json",
                                "--on-budget", "warn")
    assert code == 0, err
    report = json.loads(stdout)
    prune = next(p for p in report["passes"] if p["name"] == "prune")
    return report["accuracy"], prune["stats"], out


def test_digits_at_30_percent_fewer_macs_keeps_accuracy_and_repair_pays(run_cli, tmp_path):
    repaired, stats, out = _prune_digits(run_cli, tmp_path, "prune(target_macs=0.7)")
    assert stats["macs_after"] <= 0.7 * stats["macs_before"]
    assert repaired["before"] - repaired["after"] <= 2.0, repaired
    plain, _, _ = _prune_digits(run_cli, tmp_path, "prune(target_macs=0.7,reconstruct=false)")
    assert repaired["after"] > plain["after"] + 5, (repaired, plain)
    onnx.checker.check_model(str(out), full_check=True)


def test_bad_prune_option_is_one_line(run_cli, tmp_path):
    code, _, err = run_cli("optimize", "zoo:digits", "--passes", "prune(ratio=1.5)",
                           "-o", str(tmp_path / "x.onnx"))
    assert code == 2
    assert "prune: ratio must be in [0, 1)" in err
    assert "Traceback" not in err


def test_squeezenet_pruned_30_percent_runs_with_its_output_shape():
    model = resolve_model("zoo:squeezenet")
    Pipeline.from_spec("lossless").run(model, verify=False)
    before = model_cost(model).macs
    shapes = [tuple(v.shape) for v in model.graph.outputs]
    context = PassContext(calibration=RandomData(model, batches=2, seed=1))
    Pipeline.from_spec("prune(ratio=0.3)").run(
        model, inputs=RandomData(model, batches=1, seed=5), context=context, on_budget="warn")
    assert model_cost(model, refresh_shapes=True).macs <= 0.75 * before
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    session = oracle.make_session(ir.from_proto(proto), optimize=True)
    feed = next(iter(RandomData(model, batches=1, seed=3)))
    outputs = session.run(None, dict(feed))
    assert [tuple(o.shape) for o in outputs] == shapes
    assert np.all(np.isfinite(outputs[0]))
