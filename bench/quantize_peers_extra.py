"""modelopt's ONNX PTQ and AIMET-ONNX on the data of ``bench/quantize_peers.py`` (issue 8).

The two peers pull torch and CUDA wheels (and onnxruntime-gpu over onnxruntime), so they run
in a virtual environment of their own, apart from graphopt's; the data and the measuring stay
with ``quantize_peers`` so every quantizer is judged the same way. Three steps::

    .venv/bin/python bench/quantize_peers_extra.py export  --work W      # data + peer inputs
    PEERS/bin/python bench/quantize_peers_extra.py quantize --work W     # in the peers' venv
    .venv/bin/python bench/quantize_peers_extra.py measure --work W --json OUT

``export`` writes each model's 32 calibration and 48 held-out samples (``W/NAME-data.npz``)
and the opset-13 model the peers get (``W/NAME-opset13.onnx``, as ``quantize_peers``).
``quantize`` runs, on that model and those calibration samples:

- ``modelopt``: ``modelopt.onnx.quantization.quantize(quantize_mode="int8")`` with its
  defaults (entropy calibration) on the CPU execution provider;
- ``aimet``: AIMET-ONNX cross-layer equalization, then ``QuantizationSimModel`` (8-bit
  weights and activations, its defaults) calibrated on the samples, exported as QDQ ONNX.

``measure`` gives the output SQNR (centred per sample) and SQNR before the final Softmax on
the held-out samples in onnxruntime, as ``quantize_peers`` does for graphopt, ORT and NNCF.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

PEERS = ("modelopt", "aimet")


def _models(text: str | None) -> list[str]:
    from quantize_peers import MODELS

    return list(MODELS) if not text else text.split(",")


def export(work: Path, models: list[str]) -> None:
    from quantize_peers import model_data, model_spec, peer_input

    work.mkdir(parents=True, exist_ok=True)
    for name in models:
        data = model_data(name)
        np.savez(work / f"{name}-data.npz", calib=data["calib"], eval=data["eval"],
                 **({"labels": data["labels"]} if data["labels"] is not None else {}))
        peer_input(model_spec(name), work, name)
        print(f"{name}: data and opset-13 model in {work}", file=sys.stderr)


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    (name,) = [i.name for i in model.graph.input if i.name not in initializers]
    return name


def quantize_modelopt(source: Path, calib: np.ndarray, out: Path) -> None:
    from modelopt.onnx.quantization import quantize

    quantize(str(source), quantize_mode="int8", calibration_data={_input_name(source): calib},
             calibration_eps=["cpu"], output_path=str(out))


def quantize_aimet(source: Path, calib: np.ndarray, out: Path) -> None:
    import onnx
    from aimet_onnx.cross_layer_equalization import equalize_model
    from aimet_onnx.quantsim import QuantizationSimModel

    model = onnx.load(str(source))
    equalize_model(model)
    name = _input_name(source)
    sim = QuantizationSimModel(model, providers=["CPUExecutionProvider"])
    sim.compute_encodings([{name: calib[i:i + 1]} for i in range(len(calib))])
    onnx.save(sim.to_onnx_qdq(), str(out))


def quantize(work: Path, models: list[str], peers: list[str]) -> None:
    for name in models:
        data = np.load(work / f"{name}-data.npz")
        source = work / f"{name}-opset13.onnx"
        for peer in peers:
            out = work / f"{name}-{peer}.onnx"
            start = time.perf_counter()
            try:
                (quantize_modelopt if peer == "modelopt" else quantize_aimet)(
                    source, data["calib"], out)
                status = f"ok in {time.perf_counter() - start:.1f} s"
            except Exception as exc:  # reported, the others go on
                traceback.print_exc()
                (work / f"{name}-{peer}.error").write_text(
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                status = f"failed: {type(exc).__name__}"
            print(f"{name}: {peer} {status}", file=sys.stderr, flush=True)


def measure(work: Path, models: list[str], peers: list[str], json_path: Path | None) -> None:
    from quantize_peers import _db, fidelity, model_spec, run_outputs

    from graphopt.model_io import model_file

    rows = []
    print("| model | quantizer | output SQNR dB (centred) | SQNR dB before the final Softmax |"
          " test accuracy |")
    print("|---|---|---|---|---|")
    for name in models:
        data = np.load(work / f"{name}-data.npz")
        labels = data["labels"] if "labels" in data else None
        source = work / f"{name}-opset13.onnx"
        input_name = _input_name(source)
        batch = 64 if name == "digits" else 1  # as quantize_peers: the fp32 file, same batch
        reference = run_outputs(model_file(model_spec(name)), input_name, data["eval"], batch)
        for peer in peers:
            path, error = work / f"{name}-{peer}.onnx", work / f"{name}-{peer}.error"
            row = {"model": name, "quantizer": peer}
            if error.exists() or not path.exists():
                row["error"] = error.read_text() if error.exists() else "not quantized"
            else:
                try:
                    row.update(fidelity(reference, run_outputs(path, input_name, data["eval"],
                                                               batch), labels))
                except Exception as exc:  # a model onnxruntime cannot run
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            rows.append(row)
            if "error" in row:
                print(f"| {name} | {peer} | fails: {row['error']} | - | - |")
            else:
                accuracy = row.get("accuracy")
                print(f"| {name} | {peer} | {_db(row['sqnr_db'])} |"
                      f" {_db(row.get('sqnr_db_before_softmax'))} |"
                      f" {'-' if accuracy is None else f'{accuracy:.2%}'} |")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2, default=str))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("export", "quantize", "measure"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--models", help="comma-separated (default: quantize_peers' models)")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    peers = args.peers.split(",")
    if args.step == "quantize":  # the peers' venv has no graphopt: the models exported
        exported = sorted(p.name[:-len("-data.npz")] for p in args.work.glob("*-data.npz"))
        quantize(args.work, args.models.split(",") if args.models else exported, peers)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    models = _models(args.models)
    if args.step == "export":
        export(args.work, models)
    else:
        measure(args.work, models, peers, args.json)


if __name__ == "__main__":
    main()
