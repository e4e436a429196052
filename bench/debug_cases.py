"""``graphopt debug`` on the cases it was built for, with the figures they call for.

Cases (``--cases``, comma-separated; all by default):

- ``faults``: one fault (a wrong bias, two swapped output channels, a weight scaled by 1.1)
  planted in the middle eligible node of zoo resnet50, zoo densenet121, the trained digits
  classifier and the trained ultraface-rfb320 detector (../shared/models); is the node named
  exactly, and in how many candidate runs against log2(N)+2;
- ``memory``: peak RSS of a whole ``graphopt debug`` run on a planted fault (sweep, bisection)
  against one plain inference of the same model, each in a fresh child process
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at its end, the same imports in both);
- ``lossless``: graphopt's lossless preset on zoo resnet50 against the original;
- ``inception``: onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8
  activations, MinMax) on zoo inception_v2 after graphopt's opset upgrade to 13, calibrated
  on 32 crops of real photos and measured on 48 others (the setup of ../shared/ANCHORS.md,
  "Post-training int8 quantizers on the same data"); every Q/DQ pair disabled in turn and
  ranked; output and logits SQNR plain and centred per sample (each sample's mean removed),
  and the output with the top pairs and the final Softmax's pair disabled;
- ``nncf``: NNCF's ``nncf.quantize`` on zoo shufflenet (opset upgraded to 13 first: NNCF
  refuses opsets below 10; same 32 crops), run on openvino-cpu
  against the reference onnxruntime: the first diverging tensor and the node bisection names.

Fidelity is measured on 4 other crops (48 for ``inception``; the ``faults`` case on seeded
random inputs for the zoo nets, real test images for digits and ultraface). No timings are printed.

    .venv/bin/python bench/debug_cases.py [--cases faults,inception] [--json out.json]

``nncf`` needs ``pip install nncf`` (the ``peers`` extra); the case is skipped without it.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from graphopt import atomic, zoo
from graphopt.backends.registry import parse_backend
from graphopt.feeds import random_inputs
from graphopt.harness.debug import DebugConfig, DebugReport, debug_models
from graphopt.harness.debug_faults import FAULT_KINDS, plant_fault
from graphopt.model_io import load_model, resolve_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
ULTRAFACE = SHARED / "ultraface-rfb320" / "ultraface-rfb320.onnx"
FAULT_MODELS = ("resnet50", "densenet121", "digits", "ultraface-rfb320")
CASES = ("faults", "memory", "lossless", "inception", "nncf")
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


# -- data ------------------------------------------------------------------------------------

def _photos():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = [Image.fromarray(a) for a in load_sample_images().images]
    for name in ("images/cat.jpg", "images/dog.jpg", "ultraface-rfb320/satya.jpg",
                 "ultraface-rfb320/wolves.jpg"):
        images.append(Image.open(SHARED / name).convert("RGB"))
    return images


def photo_crops(count: int, seed: int, size: int = 224) -> list[np.ndarray]:
    """``count`` random square crops of the photos, ImageNet-normalised, [1, 3, size, size]."""
    rng = np.random.default_rng(seed)
    images, crops = _photos(), []
    for index in range(count):
        image = images[index % len(images)]
        width, height = image.size
        side = int(min(width, height) * rng.uniform(0.4, 1.0))
        x, y = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
        pixels = np.asarray(image.crop((x, y, x + side, y + side)).resize((size, size)),
                            np.float32) / 255
        crops.append(((pixels - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32))
    return crops


def _ultraface_feed() -> dict[str, np.ndarray]:
    from PIL import Image

    image = Image.open(SHARED / "ultraface-rfb320" / "satya.jpg").convert("RGB")
    pixels = np.asarray(image.resize((320, 240)), np.float32)
    return {"input": ((pixels - 127) / 128).transpose(2, 0, 1)[None].astype(np.float32)}


def fault_model(name: str):
    """(model loader, feeds) of a fault case."""
    if name == "ultraface-rfb320":
        return (lambda: load_model(ULTRAFACE)), [_ultraface_feed()]
    if name == "digits":
        x, _ = zoo.digits_test_data()
        return (lambda: resolve_model("zoo:digits")), [{"input": x[:4]}]
    model = resolve_model(f"zoo:{name}")
    return (lambda: resolve_model(f"zoo:{name}")), [random_inputs(model, seed=0)]


# -- cases -----------------------------------------------------------------------------------

def _culprit(report: DebugReport) -> str:
    b = report.bisection
    return "-" if b is None else ", ".join(f"{n} ({op})" for n, op in
                                           zip(b.culprit, b.culprit_ops, strict=True))


def _progress(text: str) -> None:
    print(f"  ... {text}", file=sys.stderr, flush=True)


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.1f}"


def case_faults(results: dict) -> None:
    print("## planted faults: located by bisection\n")
    print("| model | N nodes | fault | planted in | output dB | named | exact | candidate runs"
          " | log2(N)+2 | first tensor below 30 dB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in FAULT_MODELS:
        load, feeds = fault_model(name)
        for kind in FAULT_KINDS:
            reference, candidate = load(), load()
            label = plant_fault(candidate, kind)
            report = debug_models(reference, candidate, feeds)
            b = report.bisection
            runs = 1 + (b.candidate_runs if b else 0)
            bound = math.log2(report.candidate_nodes) + 2
            exact = b is not None and b.culprit == (label,)
            first = report.first_divergence
            row = {"model": name, "nodes": report.candidate_nodes, "fault": kind,
                   "planted": label, "output_sqnr_db": report.outputs.sqnr_db,
                   "named": list(b.culprit) if b else None, "exact": exact,
                   "candidate_runs": runs, "bound": bound,
                   "reference_runs": b.reference_runs if b else 0,
                   "first_divergence": first.match.node if first else None}
            rows.append(row)
            print(f"| {name} | {report.candidate_nodes} | {kind} | {label} |"
                  f" {_db(report.outputs.sqnr_db)} | {_culprit(report)} |"
                  f" {'yes' if exact else 'NO'} | {runs} | {bound:.1f} |"
                  f" {first.match.node if first else '-'} |", flush=True)
    print("\ncandidate runs = 1 full run (outputs) + the bisection's runs; each bisection run"
          " also needs one reference run for the tensors at its cut.\n")
    results["faults"] = rows


def _child(mode: str, name: str) -> None:
    """One measurement in this (fresh) process; prints its peak RSS as JSON."""
    from graphopt import oracle

    load, feeds = fault_model(name)
    if mode == "single":
        model = load()
        session = oracle.make_session(model)
        oracle.run_model(session, feeds[0])
    else:
        reference, candidate = load(), load()
        plant_fault(candidate, "scale")
        debug_models(reference, candidate, feeds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "model": name, "peak_rss_bytes": peak}))


def case_memory(results: dict) -> None:
    print("## peak memory: a whole debug run against one inference (fresh processes)\n")
    print("| model | one inference peak RSS MiB | debug run peak RSS MiB | ratio |")
    print("|---|---|---|---|")
    rows = []
    for name in FAULT_MODELS:
        peaks = {}
        for mode in ("single", "debug"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, name],
                                 capture_output=True, text=True, check=True).stdout
            peaks[mode] = json.loads(out.strip().splitlines()[-1])["peak_rss_bytes"]
        ratio = peaks["debug"] / peaks["single"]
        rows.append({"model": name, **peaks, "ratio": ratio})
        print(f"| {name} | {peaks['single'] / 2**20:.0f} | {peaks['debug'] / 2**20:.0f} |"
              f" {ratio:.2f} |", flush=True)
    print("\npeak RSS = ru_maxrss of the child process (Python, numpy, onnx, onnxruntime and"
          " graphopt imported in both); debug = sweep in 32 MiB chunks + bisection on a"
          " 'scale' fault.\n")
    results["memory"] = rows


def _print_report(report: DebugReport, top: int = 5) -> dict:
    first, worst = report.first_divergence, report.worst
    print(f"- outputs: {report.outputs.summary()}; verdict: {report.verdict}")
    if first is not None:
        print(f"- first tensor below {report.threshold_db:g} dB: {first.match.reference}"
              f" at {first.match.node} ({first.match.op_type}),"
              f" {_db(first.fidelity.sqnr_db)} dB")
    if worst is not None:
        print(f"- worst tensor: {worst.match.reference} at {worst.match.node}"
              f" ({worst.match.op_type}): {_db(worst.fidelity.sqnr_db)} dB,"
              f" cosine {worst.fidelity.cosine:.6f}, max abs {worst.fidelity.max_abs:.3g}")
    if report.bisection is not None:
        b = report.bisection
        print(f"- bisection names: {_culprit(report)} ({b.candidate_runs} candidate runs,"
              f" {b.cut_positions} cuts)")
    for rank, c in enumerate(report.contributions[:top], 1):
        print(f"- Q/DQ #{rank}: {c.pair} on {c.tensor}: {c.share:.1%} of the output error"
              f" power, output {_db(c.output_sqnr_db)} dB without it")
    if report.keep:
        print(f"- keep float: {', '.join(report.keep)}")
    print(f"- runs: {report.reference_runs} reference, {report.candidate_runs} candidate;"
          f" {report.matched} tensors matched, {report.candidate_nodes} candidate nodes\n")
    data = report.to_dict()
    data.pop("tensors")
    return data


def case_lossless(results: dict) -> None:
    from graphopt.pipeline import Pipeline

    print("## graphopt lossless preset on zoo resnet50 against the original\n")
    reference, candidate = resolve_model("zoo:resnet50"), resolve_model("zoo:resnet50")
    Pipeline.from_preset("lossless").run(candidate)
    report = debug_models(reference, candidate, [random_inputs(reference, seed=0)],
                          reference_label="zoo:resnet50", candidate_label="lossless")
    results["lossless"] = _print_report(report)


def calibration_reader(name: str, samples: Iterable[np.ndarray]):
    """An onnxruntime ``CalibrationDataReader`` feeding ``samples`` as input ``name``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(samples)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {name: item}

    return Reader()


def centred_sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """SQNR in dB with each sample's own mean removed from both (axis 0 = samples), signal and
    noise pooled over the samples: the measure of ../shared/ANCHORS.md ("Post-training int8
    quantizers on the same data") and bench/quantize_peers.py."""
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    c = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    r, c = r - r.mean(axis=1, keepdims=True), c - c.mean(axis=1, keepdims=True)
    noise, signal = float(np.sum((c - r) ** 2)), float(np.sum(r ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


INCEPTION_CALIBRATION, INCEPTION_TEST = 32, 48
INCEPTION_PAIRS = 24  # noisiest first; the final Softmax's pair is added below


def inception_data(kind: str, count: int, seed: int) -> list[np.ndarray]:
    """``photos``: crops of real photos; ``random``: standard normal inputs, on which this
    random-weight net's softmax is spread out (on the photos it saturates)."""
    if kind == "photos":
        return photo_crops(count, seed=seed)
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(count)]


def case_inception(results: dict, folder: Path, data: str = "photos") -> None:
    import onnx_ir as ir
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from graphopt.harness.debug_exec import Executor
    from graphopt.harness.debug_graph import PreparedModel
    from graphopt.passes.opset_upgrade import upgrade_opset

    print("## onnxruntime quantize_static on zoo inception_v2 (opset upgraded to 13)\n")
    model = resolve_model("zoo:inception_v2")
    upgrade_opset(model, 13)
    float_path, int8_path = folder / "inception_v2-13.onnx", folder / "inception_v2-int8.onnx"
    ir.save(model, float_path)
    quantize_static(str(float_path), str(int8_path),
                    calibration_reader("data_0", inception_data(data, INCEPTION_CALIBRATION, 1)),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    feeds = [{"data_0": x} for x in inception_data(data, INCEPTION_TEST, 7)]
    what = ("crops, 224x224 RGB, ImageNet mean/std" if data == "photos"
            else "standard normal inputs")
    print(f"- data: {INCEPTION_CALIBRATION} calibration {what} (seed 1), {INCEPTION_TEST} other"
          " test ones (seed 7)")
    reference, candidate = load_model(float_path), load_model(int8_path)
    report = debug_models(reference, candidate, feeds,
                          reference_label="inception_v2 (opset 13)",
                          candidate_label="quantize_static",
                          config=DebugConfig(max_pairs=INCEPTION_PAIRS,
                                             chunk_bytes=512 << 20), progress=_progress)
    # The output and the logits (the final Softmax's input), plain and centred per sample,
    # and the output with each pair of interest disabled.
    with atomic.scratch_dir() as scratch:
        ref, cand = PreparedModel(reference, scratch, "ref"), PreparedModel(candidate, scratch,
                                                                            "cand")
        softmax = next(ref.nodes[i] for i in ref.order if ref.nodes[i].op_type == "Softmax")
        logits, output = softmax.input[0], ref.outputs[0]
        cand_logits = next(p.before for p in cand.pairs
                           if p.before == logits or p.after in cand.readers and any(
                               cand.nodes[r].op_type == "Softmax" for r in cand.readers[p.after]))
        cand_output = cand.outputs[0]
        ref_runs = Executor(ref).run(ref.exposing([logits, output]), feeds)
        cand_exec = Executor(cand)
        cand_runs = cand_exec.run(cand.exposing([cand_logits, cand_output]), feeds)
        r_out = np.concatenate([run[output] for run in ref_runs])
        r_log = np.concatenate([run[logits] for run in ref_runs])
        c_out = np.concatenate([run[cand_output] for run in cand_runs])
        c_log = np.concatenate([run[cand_logits] for run in cand_runs])
        figures = {
            "output_sqnr_db": report.outputs.sqnr_db,
            "output_sqnr_db_centred": centred_sqnr(r_out, c_out),
            "logits_sqnr_db": _compare_db(r_log, c_log),
            "logits_sqnr_db_centred": centred_sqnr(r_log, c_log),
            "logit_std_per_sample_median": float(np.median(r_log.reshape(len(r_log), -1)
                                                           .std(axis=1))),
            "top_probability_median": float(np.median(r_out.reshape(len(r_out), -1)
                                                      .max(axis=1))),
        }
        softmax_pairs = {p.name for p in cand.pairs
                         if any(cand.nodes[i].op_type == "Softmax"
                                for i in [cand.producer.get(p.before)] if i is not None)}
        by_name = {p.name: p for p in cand.pairs}
        tried = [c.pair for c in report.contributions[:5]]
        tried += [n for n in softmax_pairs if n not in tried]
        disabled = []
        for name in tried:
            runs = cand_exec.run(cand.bypassing([by_name[name]]), feeds)
            out = np.concatenate([run[cand_output] for run in runs])
            rank = next((i for i, c in enumerate(report.contributions, 1) if c.pair == name),
                        None)
            share = 1 - _noise(r_out, out) / _noise(r_out, c_out)
            disabled.append({"pair": name, "rank": rank, "share": share,
                             "softmax": name in softmax_pairs,
                             "output_sqnr_db": _compare_db(r_out, out),
                             "output_sqnr_db_centred": centred_sqnr(r_out, out)})
        per_sample = _per_sample_noise(r_out, c_out)
    print(f"- output ({output}): {_db(figures['output_sqnr_db'])} dB plain,"
          f" {_db(figures['output_sqnr_db_centred'])} dB centred per sample; logits ({logits},"
          f" the Softmax's input): {_db(figures['logits_sqnr_db'])} dB plain,"
          f" {_db(figures['logits_sqnr_db_centred'])} dB centred")
    print(f"- the fp32 outputs on these crops: median logit std per sample"
          f" {figures['logit_std_per_sample_median']:.1f}, median top probability"
          f" {figures['top_probability_median']:.3f}; the largest shares of the output error"
          f" power by crop: {', '.join(f'{v:.1%}' for v in per_sample[:5])}")
    data = _print_report(report)
    print(f"- Q/DQ pairs: {report.pairs_total}; the {len(report.contributions)} that inject the"
          " most (sweep) disabled in turn by graphopt debug, ranked above; below, the top 5"
          " and the final Softmax's pair disabled again, the output measured both ways:\n")
    print("| Q/DQ pair | rank | share of the output error | output dB without it (plain) |"
          " centred |")
    print("|---|---|---|---|---|")
    for row in disabled:
        label = row["pair"] + (" (final Softmax)" if row["softmax"] else "")
        rank = ("not tried" if row["rank"] is None
                else f"{row['rank']} of {len(report.contributions)}")
        print(f"| {label} | {rank} | {row['share']:.1%} |"
              f" {_db(row['output_sqnr_db'])} | {_db(row['output_sqnr_db_centred'])} |")
    print()
    results["inception"] = {**data, **figures, "disabled": disabled,
                            "per_sample_error_share": per_sample}


def _compare_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    from graphopt.verify import compare_outputs

    return compare_outputs({"x": reference}, {"x": candidate}).sqnr_db


def _noise(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.sum((np.asarray(candidate, np.float64) - reference) ** 2))


def _per_sample_noise(reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """Each sample's share of the output error power, largest first."""
    diff = (np.asarray(candidate, np.float64) - reference).reshape(len(reference), -1)
    power = np.sum(diff ** 2, axis=1)
    total = float(power.sum())
    return sorted((float(p / total) for p in power), reverse=True) if total else []


def case_nncf(results: dict, folder: Path) -> None:
    try:
        import nncf
    except ImportError:
        print("## nncf: skipped (pip install nncf)\n")
        return
    import onnx
    import onnx_ir as ir

    from graphopt.passes.opset_upgrade import upgrade_opset

    print(f"## NNCF {nncf.__version__} int8 zoo shufflenet (opset upgraded to 13: NNCF needs"
          " 10+): openvino-cpu against the reference onnxruntime\n")
    upgraded = resolve_model("zoo:shufflenet")
    upgrade_opset(upgraded, 13)
    float_model = ir.to_proto(upgraded)
    name = float_model.graph.input[0].name
    dataset = nncf.Dataset(photo_crops(32, seed=1), lambda x: {name: x})
    quantized = nncf.quantize(float_model, dataset)
    path = folder / "shufflenet-nncf.onnx"
    onnx.save(quantized, path)
    feeds = [{name: x} for x in photo_crops(4, seed=7)]
    model = load_model(path)
    report = debug_models(model, model, feeds, reference_label="shufflenet (NNCF int8)",
                          candidate_label="shufflenet (NNCF int8)",
                          candidate_backend=parse_backend("openvino-cpu"), progress=_progress)
    results["nncf"] = _print_report(report)
    results["nncf"]["int8_convs_alone"] = _int8_convs_alone(model, feeds[0], folder)
    only_outputs = DebugConfig(sweep=False, bisect=False, pairs=False)
    for label, backend in (("the reference onnxruntime", None),
                           ("openvino-cpu", parse_backend("openvino-cpu"))):
        fp32 = debug_models(upgraded, model, feeds, candidate_backend=backend,
                            config=only_outputs)
        print(f"- for scale: NNCF int8 in {label} against fp32 (reference onnxruntime):"
              f" {fp32.outputs.summary()}")
        results["nncf"][f"int8_vs_fp32_{'ort' if backend is None else 'openvino'}"] = (
            fp32.outputs.to_dict())
    print()


def _int8_convs_alone(model, feed: dict, folder: Path) -> list[dict]:
    """Every int8 Conv (DequantizeLinear -> Conv -> QuantizeLinear) run alone on
    openvino-cpu and in the reference onnxruntime, fed the reference's tensors at the
    DequantizeLinear; its quantized output compared."""
    import onnx

    from graphopt.harness.debug_exec import Executor
    from graphopt.harness.debug_graph import PreparedModel
    from graphopt.verify import compare_outputs

    (folder / "alone").mkdir(exist_ok=True)
    prepared = PreparedModel(model, folder / "alone", "nncf")
    ort, ov = Executor(prepared), Executor(prepared, parse_backend("openvino-cpu"))
    names = [n for i in prepared.order for n in prepared.nodes[i].output if n]
    values = ort.run(prepared.exposing(names), [feed])[0]
    rows = []
    print("- each int8 Conv run alone (DQ -> Conv -> Q fed onnxruntime's tensors), openvino-cpu"
          " against onnxruntime:\n")
    print("  | Conv | group | channels in/out | spatial | quantized output equal | SQNR dB |")
    print("  |---|---|---|---|---|---|")
    for index in prepared.order:
        node = prepared.nodes[index]
        if node.op_type != "Conv":
            continue
        dq = prepared.producer.get(node.input[0])
        quantize = [r for r in prepared.readers.get(node.output[0], [])
                    if prepared.nodes[r].op_type == "QuantizeLinear"]
        if dq is None or prepared.nodes[dq].op_type != "DequantizeLinear" or not quantize:
            continue
        position = prepared.position[dq]
        fed = {c: values[c] if c in values else feed[c] for c in prepared.cut_values(position)}
        proto = prepared.starting_at(position, fed)
        out = prepared.nodes[quantize[0]].output[0]
        del proto.graph.output[:]
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
        a, b = ort.run(proto, [fed])[0][out], ov.run(proto, [fed])[0][out]
        group = next((att.i for att in node.attribute if att.name == "group"), 1)
        sqnr = compare_outputs({out: a.astype(np.float32)}, {out: b.astype(np.float32)}).sqnr_db
        row = {"conv": node.name, "group": group, "in": int(values[node.input[0]].shape[1]),
               "out": int(a.shape[1]), "spatial": list(a.shape[2:]),
               "equal": float(np.mean(a == b)), "sqnr_db": sqnr}
        rows.append(row)
        print(f"  | {node.name} | {group} | {row['in']}/{row['out']} |"
              f" {'x'.join(map(str, row['spatial']))} | {row['equal']:.1%} | {_db(sqnr)} |")
    print()
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None,
                        help="Keep the quantized models here (default: a temporary folder).")
    parser.add_argument("--inception-data", choices=("photos", "random"), default="photos",
                        help="Inputs of the inception case (default: photo crops).")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown} (known: {', '.join(CASES)})")
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.work or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for case in cases:
            if case == "faults":
                case_faults(results)
            elif case == "memory":
                case_memory(results)
            elif case == "lossless":
                case_lossless(results)
            elif case == "inception":
                case_inception(results, folder, args.inception_data)
            elif case == "nncf":
                case_nncf(results, folder)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
