"""graphopt's ``prune`` against Torch-Pruning on the same trained network (issue 9's peer item).

The network is ``zoo:digits``' PyTorch model, retrained in memory with
``bench/train_digits.py``'s own functions (imported, same seed); the script says whether the
retrained export is identical to the shipped ``graphopt/zoo/data/digits.onnx``.

Torch-Pruning side: ``tp.pruner.MagnitudePruner`` (in 1.6 a deprecated alias of
``tp.pruner.BasePruner``, which is what is called), importance
``tp.importance.MagnitudeImportance(p=1)`` (group L1), the final Linear ignored, local
(per-group) pruning with TP's other defaults, no fine-tuning; a second row also ignores the
stem conv, which keeps the stem's whole group (stem, block1's residual) as graphopt's
``protect_first`` does (``--tp-ignored``). The pruning ratio is found by
bisection so that the MACs counted by ``tp.utils.count_ops_and_params`` land at or just below
each target (30% and 50% fewer MACs by default). The pruned module is scored in torch on the
test split and exported to ONNX, where graphopt's cost model counts its MACs too.

graphopt side: the ONNX export of the unpruned torch model (``zoo:digits`` itself when the
export is identical) through ``Pipeline.from_spec("lossless,prune(target_macs=T,...)")``, wired
as ``graphopt optimize MODEL --calib zoo:digits --inputs zoo:digits:test`` wires it
(``graphopt.run_data.resolve_run_data``): calibration on the 200 training images of
``zoo:digits``, verification and top-1 accuracy on ``zoo:digits:test``. ``T`` starts at the
target share and is lowered by bisection only if the cost-model MACs of the result land above
it. Criteria ``l1`` and ``activation``, each with ``reconstruct=true`` and ``false``, with the
pass's defaults and with each of ``--extras`` added (default ``round_to=1``, TP's channel
granularity, and ``protect_first=false``, TP's default of pruning the stem's group).

Every row's MACs and params are graphopt's cost model (``graphopt.cost.model_cost``) on an
ONNX graph, so both tools are counted by the same counter; params are counted after the
``lossless`` preset (BatchNormalization folded into the convs) on every row, so a model that
still carries BN nodes does not count their four vectors each. Accuracy is top-1 on the 450
test images, in percent. No timing.

Needs torch, which graphopt does not depend on, in a separate environment::

    python3 -m venv /work/torchenv
    /work/torchenv/bin/pip install torch==2.13.0 torch-pruning scikit-learn onnx onnxruntime \\
        numpy onnxscript
    /work/torchenv/bin/pip install -e /work/main
    /work/torchenv/bin/python bench/prune_torch_peer.py [--targets 0.3,0.5] [--json out.json]

Training takes a few minutes on 2 cores; ``--state-dict PATH`` saves the trained weights
there, and loads them instead of training when the file exists (for reruns).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.metadata
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
import torch_pruning as tp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_digits as td  # noqa: E402  (bench/ is not a package)

from graphopt import zoo  # noqa: E402
from graphopt.cost import model_cost  # noqa: E402
from graphopt.model_io import resolve_model  # noqa: E402
from graphopt.pass_context import PassContext  # noqa: E402
from graphopt.pipeline import Pipeline  # noqa: E402
from graphopt.run_data import resolve_run_data  # noqa: E402

ZOO_MODEL = td.DEFAULT_OUT_DIR / "digits.onnx"
CALIB = "zoo:digits"
TEST = "zoo:digits:test"
RATIO_STEPS = 30
T_STEPS = 12


@dataclasses.dataclass
class Row:
    method: str
    target_reduction: float | None
    macs: int
    params: int
    accuracy: float
    base_macs: int
    options: dict = dataclasses.field(default_factory=dict)
    command: str = ""

    @property
    def macs_kept(self) -> float:
        return self.macs / self.base_macs

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "macs_kept": round(self.macs_kept, 4)}


def log(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- the model


def trained_model(split: td.Split, epochs: int, state_dict: Path | None) -> td.DigitsNet:
    """train_digits' seeded training, or the saved weights of an earlier run."""
    if state_dict is not None and state_dict.exists():
        log(f"loading trained weights from {state_dict} (not retraining)")
        torch.manual_seed(td.SEED)
        torch.use_deterministic_algorithms(True)
        model = td.DigitsNet()
        model.load_state_dict(torch.load(state_dict, weights_only=True))
        return model.eval()
    model = td.train_model(split, epochs)
    sys.stdout.flush()
    if state_dict is not None:
        torch.save(model.state_dict(), state_dict)
    return model.eval()


def _graph_bytes(model: onnx.ModelProto) -> bytes:
    """The model without metadata_props, doc string and producer fields, serialized."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    bare.doc_string = ""
    return bare.graph.SerializeToString(deterministic=True)


def compare_with_zoo(exported: onnx.ModelProto, split: td.Split) -> dict:
    """Is the retrained export the shipped zoo:digits? Initializers, graph, test logits."""
    shipped = onnx.load(ZOO_MODEL)
    ours = {i.name: onnx.numpy_helper.to_array(i) for i in exported.graph.initializer}
    theirs = {i.name: onnx.numpy_helper.to_array(i) for i in shipped.graph.initializer}
    same_names = set(ours) == set(theirs)
    max_weight_diff = max(
        (float(np.abs(ours[k].astype(np.float64) - theirs[k]).max()) for k in ours
         if k in theirs and ours[k].shape == theirs[k].shape), default=float("nan"))
    x_zoo, y_zoo = zoo.digits_test_data()
    logits_ours = td.onnx_logits(exported, split.x_test)
    logits_zoo = td.onnx_logits(shipped, split.x_test)
    meta = {p.key: p.value for p in shipped.metadata_props}
    result = {
        "test_split_identical": bool(np.array_equal(x_zoo, split.x_test)
                                     and np.array_equal(y_zoo, split.y_test)),
        "initializer_names_identical": same_names,
        "max_abs_weight_diff": max_weight_diff,
        "graph_identical": _graph_bytes(exported) == _graph_bytes(shipped),
        "file_identical": exported.SerializeToString(deterministic=True)
        == shipped.SerializeToString(deterministic=True),
        "max_abs_logit_diff": float(np.abs(logits_ours - logits_zoo).max()),
        "zoo_test_accuracy": float(meta.get("test_accuracy", "nan")),
        "retrained_test_accuracy": td.accuracy(logits_ours, split.y_test),
        "prediction_agreement": float((logits_ours.argmax(1) == logits_zoo.argmax(1)).mean()),
    }
    return result


def onnx_cost(proto: onnx.ModelProto) -> tuple[int, int]:
    """(MACs of the graph as given, params after the lossless preset) by graphopt's cost model."""
    model = ir.from_proto(proto)
    macs = model_cost(model).macs
    report = Pipeline.from_spec("lossless").run(model, verify=False)
    return macs, report.output_cost.params


# --------------------------------------------------------------------------- Torch-Pruning


def tp_prune(model: torch.nn.Module, example: torch.Tensor, ratio: float,
             ignored: tuple[str, ...] = ("fc",)) -> torch.nn.Module:
    """A pruned copy: BasePruner (= MagnitudePruner), group L1, the ``ignored`` modules' output
    channels kept (the Linear head always; ``stem.0`` too keeps the stem's whole group)."""
    pruned = copy.deepcopy(model).eval()
    if ratio <= 0.0:
        return pruned
    modules = dict(pruned.named_modules())
    pruner = tp.pruner.BasePruner(
        pruned,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[modules[name] for name in ignored],
    )
    pruner.step()
    return pruned.eval()


def tp_macs(model: torch.nn.Module, example: torch.Tensor) -> tuple[int, int]:
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def tp_at_target(model, example, reduction: float, base_macs: int, ignored: tuple[str, ...]):
    """Smallest ratio (bisection) whose TP-counted MACs are at or below (1 - reduction)."""
    goal = (1.0 - reduction) * base_macs
    low, high = 0.0, 0.9  # at 0.99 TP declines (a layer would lose every channel)
    best = tp_prune(model, example, high, ignored)
    if tp_macs(best, example)[0] > goal:
        raise SystemExit(f"Torch-Pruning cannot reach {reduction:.0%} fewer MACs")
    best_ratio = high
    for _ in range(RATIO_STEPS):
        middle = (low + high) / 2
        candidate = tp_prune(model, example, middle, ignored)
        if tp_macs(candidate, example)[0] <= goal:
            high, best, best_ratio = middle, candidate, middle
        else:
            low = middle
    return best, best_ratio


def torch_to_onnx(model: torch.nn.Module, split: td.Split) -> onnx.ModelProto:
    exported = td.export_onnx(model, split.x_test)
    td.inline_identity_initializers(exported)
    td.check_interface(exported)
    return exported


def tp_rows(model, split: td.Split, reductions, base_graphopt_macs: int,
            variants: list[tuple[str, ...]]) -> tuple[list[Row], dict]:
    example = torch.from_numpy(split.x_test[:1])
    base_tp_macs, base_tp_params = tp_macs(model, example)
    log(f"Torch-Pruning counter on the unpruned model: {base_tp_macs} MACs,"
        f" {base_tp_params} params")
    rows, details = [], {"torch_pruning_version": importlib.metadata.version("torch-pruning"),
                         "magnitude_pruner_is_base_pruner":
                         getattr(tp.pruner, "MagnitudePruner", None) is tp.pruner.BasePruner,
                         "base_tp_macs": base_tp_macs,
                         "base_tp_params": base_tp_params, "targets": []}
    for reduction, ignored in itertools.product(reductions, variants):
        pruned, ratio = tp_at_target(model, example, reduction, base_tp_macs, ignored)
        macs_tp, params_tp = tp_macs(pruned, example)
        acc_torch = 100.0 * td.accuracy(td.torch_logits(pruned, split.x_test), split.y_test)
        exported = torch_to_onnx(pruned, split)
        acc_onnx = 100.0 * td.accuracy(td.onnx_logits(exported, split.x_test), split.y_test)
        macs, params = onnx_cost(exported)
        channels = {name: m.out_channels for name, m in pruned.named_modules()
                    if isinstance(m, torch.nn.Conv2d)}
        name = "torch-pruning L1 (MagnitudePruner), ignored=" + "+".join(ignored)
        log(f"{name} at -{reduction:.0%}: ratio {ratio:.4f}, TP MACs {macs_tp / base_tp_macs:.4f},"
            f" graphopt MACs {macs / base_graphopt_macs:.4f}, acc torch {acc_torch:.2f}"
            f" onnx {acc_onnx:.2f}")
        if abs(acc_torch - acc_onnx) > 1e-9:
            log(f"  note: torch and ONNX Runtime accuracies differ ({acc_torch} vs {acc_onnx})")
        rows.append(Row(name, reduction, macs, params, acc_torch, base_graphopt_macs,
                        {"pruning_ratio": round(ratio, 6), "tp_macs": macs_tp,
                         "tp_macs_kept": round(macs_tp / base_tp_macs, 4),
                         "tp_params": params_tp, "onnx_accuracy": acc_onnx,
                         "conv_out_channels": channels}))
        details["targets"].append({"reduction": reduction, "ignored": list(ignored),
                                   "ratio": ratio,
                                   "tp_macs": macs_tp, "tp_params": params_tp})
    return rows, details


# --------------------------------------------------------------------------- graphopt


def graphopt_run(load, model_spec: str, spec: str):
    """``graphopt optimize MODEL --passes SPEC --calib zoo:digits --inputs zoo:digits:test``."""
    model = load()
    data = resolve_run_data(model, model_spec, calib=CALIB, inputs=TEST)
    context = PassContext(calibration=data.calibration, evaluator=data.evaluator, seed=0)
    report = Pipeline.from_spec(spec).run(model, verify=True, inputs=data.verification,
                                          context=context)
    return model, report


def graphopt_at_target(load, model_spec: str, spec_for, share: float, goal: float):
    """Run with ``target_macs=share``; if the cost model says the result is above ``goal``,
    lower the share by bisection to the largest that lands at or below it."""
    model, report = graphopt_run(load, model_spec, spec_for(share))
    tried = [(share, report.output_cost.macs)]
    if report.output_cost.macs <= goal:
        return share, report, tried
    low, high, found = 0.05, share, None
    for _ in range(T_STEPS):
        middle = (low + high) / 2
        _, candidate = graphopt_run(load, model_spec, spec_for(middle))
        tried.append((middle, candidate.output_cost.macs))
        if candidate.output_cost.macs <= goal:
            low, found = middle, (middle, candidate)
        else:
            high = middle
    if found is None:
        raise SystemExit(f"graphopt cannot reach {goal} MACs with {spec_for(share)}: {tried}")
    return found[0], found[1], tried


def graphopt_rows(load, model_spec: str, reductions, base_macs: int,
                  extras: list[str]) -> list[Row]:
    rows = []
    for reduction, extra, criterion, reconstruct in itertools.product(
            reductions, extras, ("l1", "activation"), ("true", "false")):
        more = f",{extra}" if extra else ""

        def spec_for(t: float, criterion=criterion, reconstruct=reconstruct, more=more) -> str:
            return (f"lossless,prune(target_macs={t:.4g},criterion={criterion},"
                    f"reconstruct={reconstruct}{more})")

        goal = (1.0 - reduction) * base_macs
        share, report, tried = graphopt_at_target(load, model_spec, spec_for, 1.0 - reduction,
                                                  goal)
        prune_record = next(r for r in report.passes if r.name == "prune")
        cost = report.output_cost
        name = f"graphopt prune {criterion}, reconstruct={reconstruct}{more}"
        log(f"{name} at -{reduction:.0%}: T={share:.4g}, MACs {cost.macs / base_macs:.4f},"
            f" acc {report.accuracy_after:.2f}")
        rows.append(Row(
            name, reduction, cost.macs, cost.params, float(report.accuracy_after), base_macs,
            {"target_macs": share, "tried": tried, "stats": dict(prune_record.stats),
             "explanations": list(prune_record.explanations),
             "sqnr_db": None if report.fidelity is None else report.fidelity.sqnr_db},
            f'graphopt optimize {model_spec} --passes "{spec_for(share)}" --calib {CALIB}'
            f" --inputs {TEST} -o out.onnx"))
    return rows


# --------------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    header = f"{'method':<66} {'target':>7} {'MACs kept':>9} {'MACs':>9} {'params':>7} {'acc %':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = "-" if row.target_reduction is None else f"-{row.target_reduction:.0%}"
        print(f"{row.method:<66} {target:>7} {row.macs_kept:>9.4f} {row.macs:>9d}"
              f" {row.params:>7d} {row.accuracy:>6.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.3,0.5",
                        help="MAC reductions to prune to, comma-separated (0.3 = 30%% fewer)")
    parser.add_argument("--epochs", type=int, default=td.TrainConfig.epochs)
    parser.add_argument("--state-dict", type=Path, default=None,
                        help="save the trained weights here; load them instead if it exists")
    parser.add_argument("--save-export", type=Path, default=None,
                        help="write the unpruned torch model's ONNX export here")
    parser.add_argument("--extras", default=";round_to=1;protect_first=false",
                        help="prune options added to each graphopt row, ';'-separated variants"
                        " (default: the defaults; round_to=1, TP's granularity; protect_first"
                        "=false, TP's default of pruning the stem's group)")
    parser.add_argument("--tp-ignored", default="fc;fc,stem.0",
                        help="modules Torch-Pruning keeps, ';'-separated variants (default: the"
                        " head only; the head and the stem, as graphopt's protect_first)")
    parser.add_argument("--json", type=Path, default=None, help="write rows and details here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    reductions = [float(t) for t in args.targets.split(",") if t.strip()]
    torch.manual_seed(td.SEED)
    split = td.load_split()
    model = trained_model(split, args.epochs, args.state_dict)
    exported = td.build_onnx(model, split)
    acc = td.verify_accuracy(exported, model, split)
    td.add_metadata(exported, td.provenance(acc, split))
    reproduction = compare_with_zoo(exported, split)
    log(f"retrained vs shipped zoo:digits: {json.dumps(reproduction)}")
    identical = reproduction["graph_identical"]
    if args.save_export is not None:
        onnx.save_model(exported, args.save_export)
    if identical:
        model_spec = "zoo:digits"

        def load():
            return resolve_model("zoo:digits")
    else:
        model_spec = str(args.save_export or "retrained_digits.onnx")
        proto_bytes = exported.SerializeToString()

        def load():
            return ir.from_proto(onnx.load_from_string(proto_bytes))

    base_macs, base_params = onnx_cost(exported)
    base_acc = 100.0 * acc["onnx"]
    rows = [Row("unpruned", None, base_macs, base_params, base_acc, base_macs,
                command=f"graphopt optimize {model_spec}")]
    variants = [tuple(v.split(",")) for v in args.tp_ignored.split(";") if v]
    peer_rows, peer = tp_rows(model, split, reductions, base_macs, variants)
    ours = graphopt_rows(load, model_spec, reductions, base_macs, args.extras.split(";"))
    for reduction in reductions:
        rows += [r for r in peer_rows if r.target_reduction == reduction]
        rows += [r for r in ours if r.target_reduction == reduction]
    print()
    print("MACs and params: graphopt's cost model on each ONNX graph (params after lossless"
          " folding); accuracy: top-1 on zoo:digits:test (450 images)")
    print_table(rows)
    if args.json is not None:
        payload = {"reproduction": reproduction, "model": model_spec,
                   "torch": torch.__version__, "torch_pruning": peer,
                   "rows": [r.to_dict() for r in rows]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
