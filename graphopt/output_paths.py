"""What a command writes is checked, before any work, against what it reads and itself.

A command lists the files it will write (the model output, a report, a JSON file) and the
files it reads (the model, its external data, data files); :func:`check_output_paths` refuses,
in one :class:`~graphopt.errors.OutputError` line, any written path that

- is empty, a folder, a FIFO, a device or a socket, or lies under a file;
- lies in a folder that does not exist (as onnxsim and trtexec, graphopt does not create
  missing folders: a typo in ``-o buidl/m.onnx`` is an error, not a new folder) or that is
  read-only;
- is, or is a link to, a file that is read (the model, its weights, ``--inputs``, ``--calib``);
- is written twice (``-o x --report x``);
- lies in graphopt's own zoo cache or packaged zoo data (it would silently replace
  ``zoo:NAME``).

For the model output the data files its previous version refers to count as written too:
saving removes them (see :func:`graphopt.model_io.save_model`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import onnx_ir as ir

from graphopt import atomic
from graphopt.errors import OutputError
from graphopt.model_io import (
    external_data_files,
    own_data_files,
    referenced_data_files,
    source_file,
    zoo_name,
)

__all__ = ["check_output_paths", "model_files", "data_files"]

PathLike = str | os.PathLike


def model_files(spec: PathLike, model: ir.Model | None = None) -> list[Path]:
    """The files that reading model ``spec`` reads: the ``.onnx`` and its external data (from
    ``model`` when it was loaded from ``spec``, else from the file's references)."""
    path = source_file(spec)
    if path is None:
        return []
    files = [path]
    if model is not None:
        files += sorted(external_data_files(model))
    else:
        files += sorted(referenced_data_files(path))
    return files


def data_files(spec: PathLike | None) -> list[Path]:
    """The files that data ``spec`` (``--inputs``, ``--calib``) reads: an ``.npz``, or a
    folder and the files in it; none for ``zoo:`` data."""
    if spec is None or zoo_name(spec) is not None:
        return []
    path = Path(spec)
    if path.is_dir():
        try:
            return [path, *sorted(p for p in path.iterdir() if p.is_file())]
        except OSError:
            return [path]
    return [path]


def _identities(path: Path) -> set[tuple]:
    """Ways two paths can name one file: the entry itself, its resolved target, the inode."""
    ids: set[tuple] = {("path", Path(os.path.abspath(path.parent)).resolve() / path.name)}
    try:
        ids.add(("path", path.resolve()))
    except (OSError, RuntimeError):
        pass
    try:
        info = path.stat()
        ids.add(("inode", info.st_dev, info.st_ino))
    except OSError:
        pass
    return ids


def _protected_folders() -> list[Path]:
    from graphopt import zoo

    folders = [zoo.cache_dir(), Path(zoo.__file__).parent / "data"]
    return [Path(os.path.abspath(f)).resolve() for f in folders]


def _check_parent_exists(path: Path, option: str) -> None:
    parent = path.parent
    if not os.path.isdir(parent):  # under a file: check_writable_target said so already
        raise OutputError(f"{option} {path}: folder {os.fspath(parent)} does not exist"
                          f" (create it first: mkdir -p {os.fspath(parent)})")


def check_output_paths(
    outputs: Mapping[str, PathLike | None],
    *,
    reads: Iterable[PathLike] = (),
    model_output: PathLike | None = None,
) -> None:
    """Refuse unusable or destructive output paths before any work (see the module docstring).

    ``outputs`` maps an option (``--report``) to the path it writes (``None``: not given);
    ``model_output`` is the ``-o`` path of a model; ``reads`` are every file the command reads.
    """
    written: list[tuple[str, Path]] = [(option, Path(path)) for option, path in outputs.items()
                                       if path is not None]
    if model_output is not None:
        written.insert(0, ("-o", Path(model_output)))
    for option, path in written:
        if not os.fspath(path) or os.fspath(path) in (".", ".."):
            raise OutputError(f"{option} {os.fspath(path)!r}: empty path, expected a file name")
        atomic.check_writable_target(path, option)
        _check_parent_exists(path, option)
    if model_output is not None:
        written += [("-o (its previous data file)", p) for p in own_data_files(model_output)]
    read_ids: dict[tuple, Path] = {}
    for path in reads:
        for identity in _identities(Path(path)):
            read_ids.setdefault(identity, Path(path))
    protected = _protected_folders()
    seen: dict[tuple, str] = {}
    for option, path in written:
        where = Path(os.path.abspath(path.parent)).resolve() / path.name
        for folder in protected:
            if where.is_relative_to(folder):
                raise OutputError(f"{option} {path}: inside graphopt's zoo folder {folder};"
                                  " writing there would replace a zoo: model")
        for identity in _identities(path):
            if identity in read_ids:
                raise OutputError(f"{option} {path}: refusing to write over"
                                  f" {read_ids[identity]}, which this command reads")
            if identity in seen and seen[identity] != option:
                raise OutputError(f"{option} {path}: the same file as {seen[identity]}")
            seen[identity] = option
