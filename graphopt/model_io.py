"""Load and save models through onnx-ir: safe external data, atomic writes, `zoo:NAME` specs.

Weights in external data stay memory-mapped (onnx-ir ``ExternalTensor``); they are read only
when a pass touches them or when the model is written out. Tensors of node attributes (a
Constant's value) are read into memory at load, so that they never point into the input's
folder once the model is saved elsewhere.

Saving a model with external data writes the data under a name no file has (``NAME.data``, or
``NAME.<8 hex>.data`` while the previous output still uses that), renames the ``.onnx`` over
the old one last, then removes the data file the old one referred to: a kill at any instant
leaves the complete old output or the complete new one, and a later save removes what it left
(see :mod:`graphopt.atomic`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from onnx_ir import traversal

from graphopt import atomic
from graphopt.errors import ModelLoadError, OutputError, UnsafeExternalDataError, reason_line
from graphopt.graph_checks import structural_problems
from graphopt.proto_checks import check_proto

__all__ = [
    "clone_model",
    "ZOO_PREFIX",
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "zoo_name",
    "load_model",
    "resolve_model",
    "model_file",
    "save_model",
    "model_size_bytes",
    "stored_size_bytes",
    "iter_tensors",
    "has_external_data",
    "weight_bytes",
    "external_data_files",
    "referenced_data_files",
    "own_data_files",
    "source_file",
]

logger = logging.getLogger(__name__)

ZOO_PREFIX = "zoo:"
# Protobuf cannot hold more than 2 GiB: above this many weight bytes outputs use external data.
EXTERNAL_DATA_THRESHOLD_BYTES = 1536 * 1024 * 1024
_MIN_ONNX_IR_VERSION = 3


def zoo_name(spec: str | os.PathLike) -> str | None:
    """``NAME`` when ``spec`` is ``zoo:NAME`` (a built-in model or data set), else ``None``.

    The one place that reads the ``zoo:`` scheme; everything else asks this function.
    """
    text = os.fspath(spec)
    return text[len(ZOO_PREFIX) :] if text.startswith(ZOO_PREFIX) else None


def resolve_model(spec: str | os.PathLike) -> ir.Model:
    """Load a model from a path or a ``zoo:NAME`` spec."""
    name = zoo_name(spec)
    if name is not None:
        from graphopt import zoo

        return zoo.load(name)
    return load_model(spec)


def model_file(spec: str | os.PathLike) -> Path:
    """The .onnx file behind a model spec (a path, or ``zoo:NAME`` materialised in the cache)."""
    name = zoo_name(spec)
    if name is None:
        return Path(spec)
    from graphopt import zoo

    return zoo.path(name)


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
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, ...
        raise ModelLoadError(f"{path}: not a valid ONNX model ({reason_line(exc)})") from exc
    check_proto(proto, path)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # RuntimeError, ValueError ... from serde
        raise ModelLoadError(f"{path}: not a valid ONNX model ({reason_line(exc)})") from exc
    del proto
    ir.external_data.set_base_dir(model.graph, os.path.dirname(path) or ".")
    _check_structure(model, path)
    check_external_data(model, path.resolve().parent)
    _load_attribute_tensors(model)
    return model


def _load_attribute_tensors(model: ir.Model) -> None:
    """Read external tensors of node attributes (Constant values) into memory."""
    for node in traversal.RecursiveGraphIterator(model.graph):
        for name, attr in list(node.attributes.items()):
            if attr.is_ref() or attr.value is None:
                continue
            if attr.type == ir.AttributeType.TENSOR and isinstance(attr.value, ir.ExternalTensor):
                node.attributes[name] = ir.AttrTensor(name, _in_memory(attr.value))
            elif attr.type == ir.AttributeType.TENSORS and any(
                    isinstance(t, ir.ExternalTensor) for t in attr.value):
                node.attributes[name] = ir.AttrTensors(
                    name, [_in_memory(t) if isinstance(t, ir.ExternalTensor) else t
                           for t in attr.value])


def _in_memory(tensor: ir.ExternalTensor) -> ir.Tensor:
    try:
        array = tensor.numpy().copy()
    except Exception as exc:  # short file, bad offset ...
        raise ModelLoadError(f"tensor {tensor.name!r}: cannot read its external data"
                             f" {tensor.location!r} ({reason_line(exc)})") from exc
    finally:
        tensor.release()
    return ir.Tensor(array, dtype=tensor.dtype, name=tensor.name)


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


def clone_model(model: ir.Model) -> ir.Model:
    """A copy of ``model`` that passes can rewrite without changing ``model``: new graphs,
    nodes and values, each value with its own type (onnx-ir's ``clone`` shares types, and
    ``Value.dtype = ...`` changes a type in place); the weights are shared (passes replace
    tensors, they never write into them)."""
    cloned = model.clone()
    graphs = [*cloned.graphs(), *cloned.functions.values()]
    for graph in graphs:
        values = [*graph.inputs, *getattr(graph, "initializers", {}).values()]
        values += [v for node in graph for v in node.outputs]
        for value in values:
            if value.type is not None:
                value.type = copy.deepcopy(value.type)
    return cloned


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


def source_file(spec: str | os.PathLike) -> Path | None:
    """The file model ``spec`` is read from; ``None`` for models built in memory (generated
    zoo entries)."""
    name = zoo_name(spec)
    if name is None:
        return Path(spec)
    from graphopt import zoo

    return None if name in zoo.GENERATED_MODELS else zoo.path(name)


def stored_size_bytes(spec: str | os.PathLike, model: ir.Model | None = None) -> int:
    """Bytes on disk of the model ``spec`` names: the file, its ``.data`` sidecar and the
    external data files ``model`` (loaded from ``spec``) refers to.

    Models built in memory (generated zoo entries) report ``model_size_bytes``.
    """
    path = source_file(spec)
    if path is None:
        return model_size_bytes(model if model is not None else resolve_model(spec))
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


def external_data_files(model: ir.Model) -> set[Path]:
    """The files (resolved) that the model's external tensors read."""
    return {Path(t.path).resolve() for t in iter_tensors(model)
            if isinstance(t, ir.ExternalTensor)}


def referenced_data_files(path: str | os.PathLike) -> set[Path]:
    """The external-data files that the model file at ``path`` refers to, as paths beside it
    (empty when ``path`` is not a regular file or not a readable model)."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return set()
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:
        return set()
    found = set()
    for tensor in _proto_tensors(proto.graph):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value:
                found.add(path.parent / entry.value)
    return found


def _proto_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _proto_tensors(sub)


def _our_data_name(path: Path) -> re.Pattern:
    """Names of the data files graphopt writes for the model at ``path``."""
    return re.compile(rf"^{re.escape(path.name)}(\.[0-9a-f]{{8}})?\.data$")


def save_model(
    model: ir.Model, path: str | os.PathLike, *, external_data: bool | None = None
) -> Path:
    """Write ``model`` to ``path`` so that a kill at any instant leaves the old or the new
    output complete (see the module docstring). Only regular files are written: a symlink at
    ``path`` is replaced, never followed.

    ``external_data=None`` stores weights in a data file beside the model (``NAME.data``) when
    the input had external data or the weights exceed the protobuf limit. Returns the path.
    """
    path = Path(path)
    atomic.check_writable_target(path)
    sources = external_data_files(model)
    ours = _data_files_named_ours(path)
    referenced = referenced_data_files(path) if ours else set()  # parsed only when needed
    _remove_orphans(ours - referenced, sources)
    previous = ours & referenced
    _refuse_overwriting_sources(path, previous, sources)
    data_name = _fresh_data_name(path) if _needs_external_data(model, external_data) else None
    placed: tuple[Path, int] | None = None  # the data file moved into place, and its inode
    with atomic.staging_dir(path) as stage:
        try:
            # onnx-ir writes the data file through a temporary file of its own, in ``stage``.
            ir.save(model, stage / path.name, external_data=data_name)
            staged = stage / path.name
            if data_name is not None and (stage / data_name) in referenced_data_files(staged):
                placed = (path.parent / data_name, os.stat(stage / data_name).st_ino)
                atomic.no_clobber_move(stage / data_name, placed[0])
            os.replace(staged, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {atomic.os_error_text(exc)}") from exc
        finally:
            if placed is not None:
                _remove_if_orphan(path, *placed)
    for old in previous:
        if old.name != data_name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)
    logger.debug("saved %s (external data: %s)", path, placed[0] if placed else None)
    return path


def _remove_if_orphan(path: Path, data: Path, inode: int) -> None:
    """After an interruption between placing ``data`` and renaming the model over ``path``,
    the data file is ours and referenced by nothing: remove it."""
    with contextlib.suppress(OSError):
        if os.stat(data).st_ino == inode and data not in referenced_data_files(path):
            os.unlink(data)


def _fresh_data_name(path: Path) -> str:
    name = f"{path.name}.data"
    while os.path.lexists(path.parent / name):
        name = f"{path.name}.{secrets.token_hex(4)}.data"
    return name


def _data_files_named_ours(path: Path) -> set[Path]:
    """Files beside ``path`` named as graphopt names its data files (see _our_data_name)."""
    pattern = _our_data_name(path)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return set()
    return {path.parent / e.name for e in entries
            if pattern.match(e.name) and (e.is_symlink() or e.is_file(follow_symlinks=False))}


def own_data_files(path: str | os.PathLike) -> set[Path]:
    """The data files graphopt wrote for the model at ``path`` that it still refers to: what
    saving over ``path`` removes."""
    path = Path(path)
    ours = _data_files_named_ours(path)
    return ours & referenced_data_files(path) if ours else set()


def _remove_orphans(orphans: set[Path], sources: set[Path]) -> None:
    """Data files of ours that the model beside them does not refer to: left by a kill after
    the data was in place and before the rename (or before the old data went)."""
    for candidate in orphans:
        if candidate.resolve() in sources:
            continue
        with contextlib.suppress(OSError):
            os.unlink(candidate)
            logger.debug("removed %s, left by an interrupted save", candidate)


def _refuse_overwriting_sources(path: Path, previous: set[Path], sources: set[Path]) -> None:
    """The model's own files (its external data) must never be replaced or removed."""
    target = Path(os.path.abspath(path))
    for source in sources:
        if source in (target, path.resolve()) or source in {p.resolve() for p in previous}:
            raise ModelLoadError(
                f"{path}: refusing to write over the input model's external data {source}"
            )
