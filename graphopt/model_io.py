"""Load and save models through onnx-ir: safe external data, atomic writes, `zoo:NAME` specs.

Weights in external data stay memory-mapped (onnx-ir ``ExternalTensor``); they are read only
when a pass touches them or when the model is written out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir
from onnx_ir import traversal

from graphopt.errors import ModelLoadError, UnsafeExternalDataError
from graphopt.graph_checks import structural_problems

__all__ = [
    "ZOO_PREFIX",
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "load_model",
    "resolve_model",
    "save_model",
    "model_size_bytes",
    "stored_size_bytes",
    "iter_tensors",
    "has_external_data",
    "weight_bytes",
]

logger = logging.getLogger(__name__)

ZOO_PREFIX = "zoo:"
# Protobuf cannot hold more than 2 GiB: above this many weight bytes outputs use external data.
EXTERNAL_DATA_THRESHOLD_BYTES = 1536 * 1024 * 1024
_MIN_ONNX_IR_VERSION = 3


def resolve_model(spec: str | os.PathLike) -> ir.Model:
    """Load a model from a path or a ``zoo:NAME`` spec."""
    text = os.fspath(spec)
    if text.startswith(ZOO_PREFIX):
        from graphopt import zoo

        return zoo.load(text[len(ZOO_PREFIX) :])
    return load_model(text)


def load_model(path: str | os.PathLike) -> ir.Model:
    """Load an ONNX file, refusing unreadable, truncated or unsafe models with a clear error."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, expected an .onnx file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    try:
        model = ir.load(path)
    except Exception as exc:  # protobuf DecodeError, RuntimeError from serde, ...
        raise ModelLoadError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from exc
    _check_structure(model, path)
    check_external_data(model, path.resolve().parent)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _check_structure(model: ir.Model, path: Path) -> None:
    """Reject byte strings that protobuf parsed leniently into something that is not a model."""
    if model.ir_version is None or model.ir_version < _MIN_ONNX_IR_VERSION:
        raise ModelLoadError(f"{path}: not a valid ONNX model (missing or invalid ir_version)")
    if not model.opset_imports:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no opset_import)")
    graph = model.graph
    if len(graph.outputs) == 0:
        raise ModelLoadError(f"{path}: not a valid ONNX model (graph has no outputs)")
    problems = structural_problems(graph, limit=1)
    if problems:
        raise ModelLoadError(f"{path}: model is incomplete or malformed: {problems[0]}")


def iter_tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    """Every tensor of the model: initializers and tensor attributes, subgraphs included."""
    for graph in (model.graph, *model.graph.subgraphs()):
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value
    for node in traversal.RecursiveGraphIterator(model.graph):
        for attr in node.attributes.values():
            if attr.is_ref():
                continue
            if attr.type == ir.AttributeType.TENSOR and attr.value is not None:
                yield attr.value
            elif attr.type == ir.AttributeType.TENSORS and attr.value is not None:
                yield from attr.value


def check_external_data(model: ir.Model, base_dir: Path) -> None:
    """Refuse external-data locations that are absolute or escape the model's folder."""
    base = base_dir.resolve()
    for tensor in iter_tensors(model):
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        location = Path(tensor.location)
        if location.is_absolute() or ".." in location.parts:
            raise UnsafeExternalDataError(
                f"tensor {tensor.name!r}: external data location {tensor.location!r} points outside"
                f" the model's folder {base}"
            )
        target = (base / location).resolve()
        if not target.is_relative_to(base):
            raise UnsafeExternalDataError(
                f"tensor {tensor.name!r}: external data location {tensor.location!r} resolves to"
                f" {target}, outside the model's folder {base}"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {tensor.location!r}"
                f" not found in {base}"
            )


def has_external_data(model: ir.Model) -> bool:
    return any(isinstance(t, ir.ExternalTensor) for t in iter_tensors(model))


def weight_bytes(model: ir.Model) -> int:
    """Bytes held by the model's tensors (initializers and constant attributes)."""
    return sum(t.nbytes for t in iter_tensors(model))


def model_size_bytes(model: ir.Model) -> int:
    """Approximate serialized size: weight bytes plus a small per-node overhead."""
    return weight_bytes(model) + 64 * sum(1 for _ in traversal.RecursiveGraphIterator(model.graph))


def stored_size_bytes(spec: str | os.PathLike, model: ir.Model | None = None) -> int:
    """Bytes on disk of the model ``spec`` names: the file, its ``.data`` sidecar and the
    external data files ``model`` (loaded from ``spec``) refers to.

    Models built in memory (generated zoo entries) report ``model_size_bytes``.
    """
    text = os.fspath(spec)
    if text.startswith(ZOO_PREFIX):
        from graphopt import zoo

        name = text[len(ZOO_PREFIX) :]
        if name in zoo.GENERATED_MODELS:
            return model_size_bytes(model if model is not None else zoo.load(name))
        path = zoo.path(name)
    else:
        path = Path(text)
    tensors = iter_tensors(model) if model is not None else ()
    external = {Path(t.path).resolve() for t in tensors if isinstance(t, ir.ExternalTensor)}
    sidecar = path.with_name(f"{path.name}.data")
    if sidecar.exists():
        external.add(sidecar.resolve())
    return path.stat().st_size + sum(p.stat().st_size for p in external if p.exists())


def _needs_external_data(model: ir.Model, external_data: bool | None) -> bool:
    if external_data is not None:
        return external_data
    return has_external_data(model) or weight_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES


def save_model(
    model: ir.Model, path: str | os.PathLike, *, external_data: bool | None = None
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file, then rename).

    ``external_data=None`` stores weights in ``<name>.data`` beside the model when the input had
    external data or the weights exceed the protobuf limit. Returns the written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_overwriting_sources(model, path)
    data_name = f"{path.name}.data" if _needs_external_data(model, external_data) else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal modes
    try:
        # onnx-ir writes the external data file itself through a temporary file and a rename.
        ir.save(model, tmp_name, external_data=data_name)
        os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    logger.debug("saved %s (external data: %s)", path, data_name)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_overwriting_sources(model: ir.Model, path: Path) -> None:
    """The model's own files (its external data) must never be the output."""
    target = path.resolve()
    targets = {target, target.with_name(f"{target.name}.data")}
    for tensor in iter_tensors(model):
        if isinstance(tensor, ir.ExternalTensor):
            source = Path(tensor.path).resolve()
            if source in targets or source.with_suffix("") == target:
                raise ModelLoadError(
                    f"{path}: refusing to write over the input model's external data {source}"
                )
