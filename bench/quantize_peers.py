"""graphopt's ``int8`` preset against onnxruntime's ``quantize_static`` and NNCF's
``nncf.quantize`` in one run, on the same calibration data (issue 8; the method of
../shared/ANCHORS.md, "Post-training int8 quantizers on the same data").

Models: zoo squeezenet, resnet50, shufflenet, inception_v2, densenet121 (ImageNet mean/std),
zoo:digits (calibrated on its 200-image calibration split, measured on its 450 test images with
their labels), ../shared/models/ultraface-rfb320 ((x - 127) / 128, RGB, 240x320) and
../shared/models/superres-10 (the Y channel in [0, 1], 224x224).

Data: 32 calibration crops and 48 other crops of real photos (``photo_crops`` of
bench/debug_cases.py: scikit-learn's sample images and ../shared/models' photos; seeds 1 and
7); ultraface gets 320x320 crops cut to their middle 240 rows, superres-10 the crops' luma
(BT.601, as PIL's YCbCr conversion).

Quantizers, each given exactly the same calibration samples:

- ``graphopt``: ``Pipeline.from_preset("int8")`` with
  ``PassContext(calibration=ArrayData(...))`` and nothing else (no budget, no target: the
  defaults);
- ``ort``: onnxruntime ``quantize_static`` (QDQ, ``per_channel=True``, MinMax, uint8
  activations, int8 weights) on the model with its opset raised to 13 by graphopt's upgrader
  (``quantize_static`` writes invalid models from opset 9);
- ``nncf``: ``nncf.quantize`` with its defaults (fast bias correction on) on the same
  opset-13 model (skipped when nncf is not installed: the ``peers`` extra);
- ``graphopt-target`` and ``graphopt-target-ov`` (only with ``--latency``): the ``int8``
  preset with an ort-cpu (``--target ort-cpu``) or openvino-cpu (``--target openvino-cpu``)
  latency probe, which keeps float whatever is slower there than the fp32 model (on
  OpenVINO: than its default precision, bf16 on CPUs with AMX).

Fidelity: output SQNR (dB) against the fp32 model, both in onnxruntime (CPU, default graph
optimizations), on the 48 held-out crops (digits: its test split), each output *centred per
sample* (each sample's own mean subtracted from the fp32 and from the int8 output before the
error is taken; random-weight zoo nets have near-uniform outputs, the signal is their spread),
signal and noise pooled over the samples; the worst output of multi-output models. digits
also gets test accuracy. The same SQNR is also taken on the input of each model's final
Softmax (the logits as that model computes them, behind any Q/DQ a quantizer put on the
output): zoo resnet50's softmax is saturated on these crops (one-hot, fp32 and every int8
model agree to float rounding), so its output column says nothing and the logits one does.

``--latency``: the int8/fp32 time ratio of every quantized model on ort-cpu and openvino-cpu
(fp32 = the original model file; on OpenVINO that is its own default precision, bf16 on CPUs
with AMX), measured paired with graphopt's method (``backends.comparison.compare``: every
model of a row alive at once, interleaved blocks, the speedup's bootstrap CI;
``--latency-seconds`` per backend and model). Lower is better, > 1 = slower than fp32.

``--memory``: peak RSS of a fresh child process that quantizes zoo resnet50 with 16 and 512
calibration samples (graphopt's ``int8``; onnxruntime's ``quantize_static`` with MinMax and
with Entropy, capped at ``--ort-max-samples``), against a child that only loads the same
model and sample pool. The samples are streamed to every quantizer from a pool of 64 crops
(sample i = crop i mod 64 rolled by i // 64 pixels), so every run holds the same inputs. A
child whose RSS passes ``--memory-cap-gb`` is killed and reported as above the cap.

    .venv/bin/python bench/quantize_peers.py [--models squeezenet,digits]
        [--quantizers graphopt,ort,nncf] [--latency [--latency-seconds 20]] [--memory]
        [--json out.json] [--work DIR [--reuse]]

``--reuse`` takes the quantized models already in ``--work`` (from an earlier run) instead of
quantizing again, e.g. to measure ``--latency`` later on the models the fidelity table used.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debug_cases import calibration_reader, photo_crops  # noqa: E402  (bench/ is not a package)

from graphopt import zoo  # noqa: E402
from graphopt.calibration import ArrayData, SampleData  # noqa: E402
from graphopt.feeds import model_inputs  # noqa: E402
from graphopt.model_io import model_file, resolve_model, save_model  # noqa: E402
from graphopt.pass_context import PassContext  # noqa: E402
from graphopt.pipeline import Pipeline  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
ULTRAFACE = SHARED / "ultraface-rfb320" / "ultraface-rfb320.onnx"
SUPERRES = SHARED / "superres-10" / "super-resolution-10.onnx"
MODELS = ("squeezenet", "resnet50", "shufflenet", "inception_v2", "densenet121", "digits",
          "ultraface-rfb320", "superres-10")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)
QUANTIZERS = ("graphopt", "ort", "nncf")
LATENCY_BACKENDS = ("ort-cpu", "openvino-cpu")
TARGETS = {"graphopt-target": "ort-cpu", "graphopt-target-ov": "openvino-cpu"}
"""The quantizers --latency adds: graphopt's int8 with a latency probe on that backend."""
CALIB_SEED, EVAL_SEED = 1, 7
CALIB_COUNT, EVAL_COUNT = 32, 48
PEER_OPSET = 13
MEMORY_SAMPLES = (16, 512)
MEMORY_POOL = 64
MEMORY_QUANTIZERS = ("graphopt", "ort-MinMax", "ort-Entropy")
_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def _log(text: str) -> None:
    print(f"  ... {text}", file=sys.stderr, flush=True)


# -- models and data ---------------------------------------------------------------------------

def model_spec(name: str) -> str:
    return {"ultraface-rfb320": str(ULTRAFACE), "superres-10": str(SUPERRES)}.get(
        name, f"zoo:{name}")


def _ultraface_crops(count: int, seed: int) -> list[np.ndarray]:
    """Crops of the same photos for ultraface: 320x320, middle 240 rows, (x - 127) / 128."""
    crops = []
    for crop in photo_crops(count, seed, size=320):
        pixels = (crop * _STD + _MEAN) * 255  # undo ImageNet normalisation: RGB in [0, 255]
        crops.append(((pixels[:, :, 40:280, :] - 127) / 128).astype(np.float32))
    return crops


def _superres_crops(count: int, seed: int) -> list[np.ndarray]:
    """The luma of the same 224x224 crops, in [0, 1]: superres-10's input."""
    return [((crop * _STD + _MEAN) * _LUMA).sum(axis=1, keepdims=True).clip(0, 1)
            .astype(np.float32) for crop in photo_crops(count, seed)]


def model_data(name: str) -> dict:
    """``calib`` [N, ...] array, ``eval`` [M, ...] array, ``labels`` (or None)."""
    if name == "digits":
        calib, _ = zoo.digits_calibration_data()
        x, y = zoo.digits_test_data()
        return {"calib": calib, "eval": x, "labels": y,
                "about": f"calib = zoo:digits ({len(calib)} training images), eval ="
                         f" zoo:digits:test ({len(x)} images)"}
    make = {"ultraface-rfb320": _ultraface_crops, "superres-10": _superres_crops}.get(
        name, photo_crops)
    return {"calib": np.concatenate(make(CALIB_COUNT, CALIB_SEED)),
            "eval": np.concatenate(make(EVAL_COUNT, EVAL_SEED)), "labels": None,
            "about": f"{CALIB_COUNT} calibration crops (seed {CALIB_SEED}), {EVAL_COUNT}"
                     f" other crops (seed {EVAL_SEED})"}


def input_name(model) -> str:
    (value,) = model_inputs(model)
    return value.name


def peer_input(spec: str, folder: Path, name: str) -> Path:
    """The model with its opset raised to 13 (graphopt's upgrader) and its initializers no
    longer listed as graph inputs (the step onnxruntime's docs give: listed, they stay
    overridable, so onnxruntime neither folds nor fuses them), for the peers."""
    import onnx_ir.passes.common as common_passes

    from graphopt.passes.opset_upgrade import upgrade_opset

    path = folder / f"{name}-opset{PEER_OPSET}.onnx"
    if not path.exists():
        model = resolve_model(spec)
        upgrade_opset(model, PEER_OPSET)
        common_passes.RemoveInitializersFromInputsPass()(model)
        save_model(model, path)
    return path


# -- quantizers --------------------------------------------------------------------------------

def quantize_graphopt(spec: str, samples, out: Path, *, latency=None) -> dict:
    """``samples``: an array [N, ...] or a :class:`SampleData`."""
    model = resolve_model(spec)
    data = samples if isinstance(samples, SampleData) else ArrayData(
        model, {input_name(model): samples}, description=f"{len(samples)} calibration samples")
    context = PassContext(calibration=data, latency=latency)
    report = Pipeline.from_preset("int8").run(model, context=context)
    save_model(model, out)
    stats = next((p.stats for p in report.passes if p.name == "quantize"), {})
    return {"stats": stats, "warnings": list(report.warnings)}


def _singles(array: np.ndarray):
    return (array[i:i + 1] for i in range(len(array)))


def quantize_ort(float_path: Path, name: str, samples, out: Path,
                 method: str = "MinMax") -> dict:
    """``samples``: an array [N, ...] or an iterable of [1, ...] arrays."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    items = _singles(samples) if isinstance(samples, np.ndarray) else samples
    quantize_static(str(float_path), str(out), calibration_reader(name, items),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    return {}


def quantize_nncf(float_path: Path, name: str, samples: np.ndarray, out: Path) -> dict:
    import nncf
    import onnx

    model = onnx.load(str(float_path))
    dataset = nncf.Dataset(list(_singles(samples)), lambda x: {name: x})
    quantized = nncf.quantize(model, dataset, subset_size=len(samples))
    onnx.save(quantized, str(out))
    return {"nncf": nncf.__version__}


# -- fidelity ----------------------------------------------------------------------------------

def _session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _exposing_softmax_inputs(path: Path) -> tuple[object, dict[str, str]]:
    """The model at ``path`` (serialized) with its final Softmax inputs as graph outputs too,
    and ``{extra output: 'OUTPUT before Softmax'}``: the logits, as this model computes them."""
    import onnx

    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    outputs = [o.name for o in model.graph.output]
    extra = {}
    for output in outputs:
        node = producer.get(output)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear",
                                                    "Cast"):
            node = producer.get(node.input[0])  # a Q/DQ pair or a Cast on the output
        if node is not None and node.op_type == "Softmax" and node.input[0] not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.input[0]))
            extra[node.input[0]] = f"{output} before Softmax"
    return model.SerializeToString(), extra


def run_outputs(path: Path, name: str, samples: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """The model's outputs on ``samples`` (axis 0), plus its final Softmax inputs (named
    'OUTPUT before Softmax')."""
    model, extra = _exposing_softmax_inputs(path)
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list] = {n: [] for n in names}
    for start in range(0, len(samples), batch):
        for n, value in zip(names, session.run(names, {name: samples[start:start + batch]}),
                            strict=True):
            chunks[n].append(np.asarray(value, np.float64))
    return {extra.get(n, n): np.concatenate(v) for n, v in chunks.items()}


def centred_sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """SQNR in dB with each sample's own mean removed from both (axis 0 = samples)."""
    r = reference.reshape(len(reference), -1)
    c = candidate.reshape(len(candidate), -1)
    r = r - r.mean(axis=1, keepdims=True)
    c = c - c.mean(axis=1, keepdims=True)
    noise = float(np.sum((c - r) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def fidelity(reference: dict, candidate: dict, labels) -> dict:
    """Output SQNR (worst output), the SQNR before each final Softmax (worst), accuracy."""
    per_output = {n: centred_sqnr(reference[n], candidate[n]) for n in reference}
    outputs = [v for n, v in per_output.items() if not n.endswith(" before Softmax")]
    logits = [v for n, v in per_output.items() if n.endswith(" before Softmax")]
    result = {"sqnr_db": min(outputs), "sqnr_db_before_softmax": min(logits, default=None),
              "sqnr_db_per_output": per_output}
    if labels is not None:
        (first, *_) = candidate.values()
        result["accuracy"] = float(np.mean(first.argmax(axis=1) == labels))
    return result


# -- latency -----------------------------------------------------------------------------------

def measure_latency(fp32: Path, candidates: dict[str, Path], name: str, feed: np.ndarray,
                    backend: str, args) -> dict[str, dict]:
    """int8 / fp32 time ratio of each candidate on ``backend``, all paired in one run; when
    a backend cannot run one of them, each is paired with fp32 alone."""
    from graphopt.backends.comparison import Contender, compare
    from graphopt.backends.paired import PairedConfig
    from graphopt.backends.registry import parse_backend

    spec = parse_backend(backend)
    config = PairedConfig(max_seconds=args.latency_seconds, min_rounds=args.latency_rounds)

    def run(labels: list[str]) -> dict[str, dict]:
        entries = [Contender("fp32", fp32, {name: feed}, spec)]
        entries += [Contender(label, candidates[label], {name: feed}, spec) for label in labels]
        bench = compare(entries, config, threads=args.threads, sessions=args.sessions)
        rows = {}
        for index, label in enumerate(labels, 1):
            interval = bench.comparison_of(index).interval
            rows[label] = {"ratio": 1 / interval.estimate, "ratio_ci": [1 / interval.high,
                                                                         1 / interval.low],
                           "precision": bench.precisions[index],
                           "fp32_precision": bench.precisions[0],
                           "stop": bench.result.stop_detail}
        return rows

    labels, rows = [], {}
    for label in candidates:  # a runtime crash (OpenVINO segfaults on some) must not end the run
        error = _crashes(candidates[label], name, feed, backend)
        if error is None:
            labels.append(label)
        else:
            rows[label] = {"error": error}
            _log(f"{backend}: {label}: {error}")
    if not labels:
        return rows
    try:
        return {**rows, **run(labels)}
    except Exception as exc:  # one model the backend cannot run: pair the others alone
        _log(f"{backend}: all together failed ({str(exc).splitlines()[0][:120]}); one by one")
    for label in labels:
        try:
            rows.update(run([label]))
        except Exception as exc:
            rows[label] = {"error": str(exc).splitlines()[0][:160]}
    return rows


def _crashes(path: Path, name: str, feed: np.ndarray, backend: str) -> str | None:
    """Why ``path`` kills a process on ``backend`` (a signal, in a child that loads it and runs
    it twice), or ``None``; a Python error is left for the measurement to report."""
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "x.npy", feed)
        code = ("import sys, numpy as np\n"
                "from graphopt.backends.registry import start_runner\n"
                "runner = start_runner(sys.argv[1], sys.argv[2], label='model')\n"
                "feed = {sys.argv[3]: np.load(sys.argv[4])}\n"
                "runner.infer(feed); runner.infer(feed)\n")
        try:
            done = subprocess.run([sys.executable, "-c", code, backend, str(path), name,
                                   str(Path(scratch) / "x.npy")], capture_output=True,
                                  timeout=600)
        except subprocess.TimeoutExpired:
            return f"{backend} hangs on it (no result in 600 s)"
    if done.returncode < 0:
        return f"{backend} crashes on it (signal {-done.returncode})"
    return None


# -- one model ---------------------------------------------------------------------------------

def bench_model(name: str, quantizers: list[str], folder: Path, args) -> list[dict]:
    spec = model_spec(name)
    model = resolve_model(spec)
    data_name = input_name(model)
    data = model_data(name)
    batch = 64 if name == "digits" else 1
    fp32_path = model_file(spec)
    _log(f"{name}: fp32 reference ({data['about']})")
    reference = run_outputs(fp32_path, data_name, data["eval"], batch)
    rows = []
    fp32_row = {"model": name, "quantizer": "fp32", "data": data["about"],
                **fidelity(reference, reference, data["labels"])}
    rows.append(fp32_row)
    paths: dict[str, Path] = {}
    for quantizer in quantizers:
        out = folder / f"{name}-{quantizer}.onnx"
        row = {"model": name, "quantizer": quantizer}
        _log(f"{name}: {quantizer}")
        start = time.perf_counter()
        try:
            if args.reuse and out.exists():
                row["reused"] = str(out)
            elif quantizer == "graphopt":
                row.update(quantize_graphopt(spec, data["calib"], out))
            elif quantizer in TARGETS:
                from graphopt.backends.probe import RunnerLatencyProbe

                probe = RunnerLatencyProbe(TARGETS[quantizer], threads=args.threads,
                                           max_seconds=args.latency_seconds)
                row.update(quantize_graphopt(spec, data["calib"], out, latency=probe))
            elif quantizer == "ort":
                row.update(quantize_ort(peer_input(spec, folder, name), data_name,
                                        data["calib"], out))
            elif quantizer == "nncf":
                row.update(quantize_nncf(peer_input(spec, folder, name), data_name,
                                         data["calib"], out))
            row["seconds"] = time.perf_counter() - start
            row.update(fidelity(reference, run_outputs(out, data_name, data["eval"], batch),
                                data["labels"]))
            paths[quantizer] = out
        except Exception as exc:  # report the failure in the table and go on
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            _log(f"{name}: {quantizer} failed: {row['error']}")
        rows.append(row)
    if args.latency and paths:
        feed = data["eval"][:1]
        for backend in LATENCY_BACKENDS:
            _log(f"{name}: latency on {backend}")
            measured = measure_latency(fp32_path, paths, data_name, feed, backend, args)
            for row in rows:
                if row["quantizer"] in measured:
                    row.setdefault("latency", {})[backend] = measured[row["quantizer"]]
    return rows


# -- calibration memory ------------------------------------------------------------------------

class PoolData(SampleData):
    """``count`` samples streamed from a fixed pool: sample i = pool[i % P] rolled by i // P
    pixels along the width, made when asked for (never all held)."""

    def __init__(self, model, name: str, pool: np.ndarray, count: int) -> None:
        super().__init__(model, batch_size=1, description=f"{count} streamed photo crops")
        self.name, self.pool, self.count = name, pool, count
        self._check_first()

    def _sample_count(self) -> int:
        return self.count

    def sample(self, index: int) -> np.ndarray:
        return np.roll(self.pool[index % len(self.pool)], index // len(self.pool),
                       axis=-1)[None]

    def _load(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: np.concatenate([self.sample(int(i)) for i in indices])}


def _memory_child(quantizer: str, count: int, folder: Path) -> None:
    """One calibration in this fresh process; prints its peak RSS as JSON."""
    spec = "zoo:resnet50"
    model = resolve_model(spec)
    name = input_name(model)
    pool = np.concatenate(photo_crops(MEMORY_POOL, CALIB_SEED))
    data = PoolData(model, name, pool, max(count, 1))
    start = time.perf_counter()
    if quantizer == "graphopt":
        quantize_graphopt(spec, data, folder / f"mem-graphopt-{count}.onnx")
    elif quantizer.startswith("ort-"):
        samples = (data.sample(i) for i in range(count))
        quantize_ort(peer_input(spec, folder, "resnet50"), name, samples,
                     folder / f"mem-{quantizer}-{count}.onnx", method=quantizer[4:])
    elif quantizer != "none":
        raise SystemExit(f"unknown memory quantizer {quantizer}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"quantizer": quantizer, "samples": count, "peak_rss_bytes": peak,
                      "seconds": time.perf_counter() - start}))


def _rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children (bytes)."""
    total = 0
    try:
        out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
                             capture_output=True, text=True).stdout
        total = sum(int(x) for x in out.split()) * 1024
    except (OSError, ValueError):
        pass
    return total


def _run_child(quantizer: str, count: int, folder: Path, cap: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", quantizer, str(count),
               "--work", str(folder)]
    log = folder / f"mem-{quantizer}-{count}.log"
    with tempfile.TemporaryFile("w+") as out, open(log, "w") as err:
        # Files, not pipes: the quantizers' warnings would fill a pipe and block the child.
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        watched = 0
        while child.poll() is None:
            watched = max(watched, _rss_bytes(child.pid))
            if watched > cap:
                child.kill()
                child.wait()
                return {"quantizer": quantizer, "samples": count, "killed_above_bytes": cap}
            time.sleep(0.2)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = log.read_text().strip().splitlines() or ["?"]
        return {"quantizer": quantizer, "samples": count, "error": tail[-1][:200]}
    return json.loads(lines[-1])


def case_memory(args, folder: Path, results: dict) -> None:
    import onnxruntime

    print("## calibration peak memory on zoo resnet50 (fresh child process per run)\n")
    print("| quantizer | samples | peak RSS MiB | over the load-only child MiB | seconds |")
    print("|---|---|---|---|---|")
    cap = int(args.memory_cap_gb * 2**30)
    wanted = _split(args.memory_quantizers, MEMORY_QUANTIZERS, "memory quantizers")
    runs = [("none", 0)]
    if "graphopt" in wanted:
        runs += [("graphopt", n) for n in MEMORY_SAMPLES]
    for method in ("MinMax", "Entropy"):
        if f"ort-{method}" in wanted:
            counts = sorted({min(n, args.ort_max_samples) for n in MEMORY_SAMPLES})
            runs += [(f"ort-{method}", n) for n in counts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.memory_jobs) as pool:
        rows = list(pool.map(lambda run: _run_child(*run, folder, cap), runs))
    base = None
    for (quantizer, count), row in zip(runs, rows, strict=True):
        label = {"none": "load model + 64-crop pool only",
                 "graphopt": "graphopt int8 (mse, bounded histograms)",
                 "ort-MinMax": f"onnxruntime {onnxruntime.__version__} quantize_static MinMax",
                 "ort-Entropy": f"onnxruntime {onnxruntime.__version__} quantize_static"
                                " Entropy"}[quantizer]
        if "peak_rss_bytes" in row:
            peak = row["peak_rss_bytes"]
            if quantizer == "none":
                base = peak
            over = "-" if base is None or quantizer == "none" else f"{(peak - base) / 2**20:.0f}"
            print(f"| {label} | {count} | {peak / 2**20:.0f} | {over} |"
                  f" {row['seconds']:.1f} |", flush=True)
        elif "killed_above_bytes" in row:
            print(f"| {label} | {count} | killed above {cap / 2**30:.1f} GiB | - | - |",
                  flush=True)
        else:
            print(f"| {label} | {count} | failed: {row['error']} | - | - |", flush=True)
    print(f"\npeak RSS = ru_maxrss (RUSAGE_SELF) at the end of the child; the same imports,"
          f" model and pool in every child. ORT runs capped at {args.ort_max_samples}"
          " samples. Each child's log: mem-QUANTIZER-N.log in --work.\n")
    results["memory"] = rows


# -- table -------------------------------------------------------------------------------------

def _db(value) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1f}"


def _ratio(row: dict, backend: str) -> str:
    entry = row.get("latency", {}).get(backend)
    if entry is None:
        return "-"
    if "error" in entry:
        return "fails"
    low, high = entry["ratio_ci"]
    return f"{entry['ratio']:.2f} [{low:.2f}, {high:.2f}]"


def print_rows(rows: list[dict], latency: bool) -> None:
    for row in rows:
        if "error" in row:
            cells = [row["model"], row["quantizer"], f"failed: {row['error']}", "-", "-"]
        else:
            accuracy = row.get("accuracy")
            cells = [row["model"], row["quantizer"], _db(row.get("sqnr_db")),
                     _db(row.get("sqnr_db_before_softmax")),
                     "-" if accuracy is None else f"{accuracy:.2%}"]
        if latency:
            cells += [_ratio(row, b) for b in LATENCY_BACKENDS]
        print("| " + " | ".join(cells) + " |", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS),
                        help="graphopt, ort, nncf (graphopt-target and graphopt-target-ov"
                             " are added by --latency)")
    parser.add_argument("--latency", action="store_true",
                        help="also measure int8/fp32 latency ratios on ort-cpu and openvino-cpu")
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="time budget of one paired measurement (default 20)")
    parser.add_argument("--latency-rounds", type=int, default=20,
                        help="minimum paired rounds (default 20)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--no-fidelity", action="store_true",
                        help="skip the fidelity table (with --memory: memory only)")
    parser.add_argument("--memory", action="store_true",
                        help="calibration peak memory, 16 vs 512 samples on zoo resnet50")
    parser.add_argument("--ort-max-samples", type=int, default=64)
    parser.add_argument("--memory-cap-gb", type=float, default=8.0)
    parser.add_argument("--memory-quantizers", default=",".join(MEMORY_QUANTIZERS))
    parser.add_argument("--memory-jobs", type=int, default=1,
                        help="memory children run at once (each one's own peak is measured;"
                             " default 1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None,
                        help="Keep the quantized models here (default: a temporary folder).")
    parser.add_argument("--reuse", action="store_true",
                        help="use the quantized models already in --work instead of"
                             " quantizing again (e.g. to measure --latency on them later)")
    parser.add_argument("--memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _split(text: str, known: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(items) - set(known))
    if unknown:
        raise SystemExit(f"unknown {what} {unknown} (known: {', '.join(known)})")
    return items


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        args.work.mkdir(parents=True, exist_ok=True)
        _memory_child(args.memory_child[0], int(args.memory_child[1]), args.work)
        return
    models = _split(args.models, MODELS, "models")
    quantizers = _split(args.quantizers, QUANTIZERS + tuple(TARGETS), "quantizers")
    if "nncf" in quantizers:
        try:
            import nncf  # noqa: F401
        except ImportError:
            _log("nncf is not installed (pip install nncf): skipped")
            quantizers.remove("nncf")
    if args.latency:
        quantizers += [q for q in TARGETS if q not in quantizers]
    results: dict = {"versions": _versions(), "argv": sys.argv[1:], "rows": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.work or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.no_fidelity:
            print(f"## int8 quantizers on the same data ({_versions_line(results['versions'])})"
                  "\n")
            header = ["model", "quantizer", "output SQNR dB (centred)",
                      "SQNR dB before the final Softmax", "test accuracy"]
            if args.latency:
                header += [f"{b} int8/fp32 [95% CI]" for b in LATENCY_BACKENDS]
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for name in models:
                rows = bench_model(name, quantizers, folder, args)
                print_rows(rows, args.latency)
                results["rows"].extend(rows)
                if args.json is not None:  # after each model: a crash keeps what was measured
                    args.json.write_text(json.dumps(results, indent=2, default=str))
            print("\nSQNR against fp32 in onnxruntime on held-out data, each output centred per"
                  " sample (worst output); latency ratio < 1 = faster than fp32.\n")
        if args.memory:
            case_memory(args, folder, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def _versions() -> dict:
    import onnxruntime

    from graphopt.backends.environment import capture_environment

    cpu = capture_environment()["cpu"]
    flags = sorted(f for f, on in (cpu["flags"] or {}).items() if on)
    versions = {"cpu": f"{cpu['model']}, {cpu['logical_cores_available']} cores"
                       f" ({' '.join(flags) or 'no flags read'})",
                "onnxruntime": onnxruntime.__version__}
    for module in ("nncf", "openvino"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return versions


def _versions_line(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


if __name__ == "__main__":
    main()
