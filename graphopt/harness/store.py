"""The result store: one JSON line per finished cell of a sweep, appended, never rewritten.

A cell is one model through one pipeline on one backend with given timing settings. Its key
(:func:`cell_key`) is a hash of what decides the measurement: the model's content (the
``.onnx`` bytes and every external data file it reads, :func:`model_digest`), the pipeline
spec, the backend spec, the timing settings and the graphopt version. A sweep that stops
(Ctrl-C, a crash, ``kill -9``) and starts again skips the cells whose key the store holds;
editing the model, the pipeline, the settings or upgrading graphopt measures them anew.

Crash and concurrency safety:

- A record is written with a single ``write()`` of the complete line (newline included) on a
  descriptor opened with ``O_APPEND``, under an exclusive ``fcntl`` lock on the store, then
  ``fsync``-ed: writers in other processes (a process pool, two sweeps at once) never
  interleave their lines.
- A writer killed inside its ``write()`` leaves at most one unterminated last line. Readers
  ignore a last line without its newline, and a line that is not a JSON object (logged);
  the next writer first ends such a fragment with a newline, so its own line stays whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from graphopt import __version__
from graphopt.atomic import os_error_text
from graphopt.errors import OutputError
from graphopt.model_io import model_file, referenced_data_files

__all__ = ["Cell", "ResultStore", "cell_key", "model_digest", "FINISHED"]

logger = logging.getLogger(__name__)

FINISHED = ("ok", "failed")
"""Statuses that end a cell: resume skips them. A ``skipped`` cell (a backend not available
here, a pass not registered yet) is tried again by the next run."""
_CHUNK = 1 << 20


def model_digest(spec: str | os.PathLike) -> str:
    """``sha256:<hex>`` of the model file behind ``spec`` and, in name order, every external
    data file it refers to (name and bytes)."""
    path = model_file(spec)
    digest = hashlib.sha256()
    try:
        for index, file in enumerate([path, *sorted(referenced_data_files(path))]):
            if index:
                digest.update(b"\0" + file.name.encode() + b"\0")
            with open(file, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the model to hash it ({os_error_text(exc)})"
                          ) from exc
    return f"sha256:{digest.hexdigest()}"


@dataclasses.dataclass(frozen=True)
class Cell:
    """What one measurement is of: a model, a pipeline, a backend, timing settings."""

    model: str
    pipeline: str
    pipeline_spec: str
    backend: str
    timing: Mapping[str, object]
    model_hash: str
    version: str = __version__

    @property
    def key(self) -> str:
        return cell_key(self)

    @property
    def name(self) -> str:
        return f"{self.model} [{self.pipeline}] on {self.backend}"

    def to_dict(self) -> dict:
        return {"model": self.model, "pipeline": self.pipeline,
                "pipeline_spec": self.pipeline_spec, "backend": self.backend,
                "timing": dict(self.timing), "model_hash": self.model_hash,
                "graphopt_version": self.version}


def cell_key(cell: Cell) -> str:
    """Hash of what decides a cell's measurement (the model's name as written is left out:
    the same content under another path is the same cell)."""
    identity = {"model_hash": cell.model_hash, "pipeline_spec": cell.pipeline_spec,
                "backend": cell.backend, "timing": dict(cell.timing),
                "graphopt_version": cell.version}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultStore:
    """The JSON-lines file at ``path`` (created on the first append)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def records(self) -> list[dict]:
        """Every complete record in file order; a torn last line and unreadable lines are
        left out."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot read the result store"
                              f" ({os_error_text(exc)})") from exc
        lines = data.split(b"\n")
        if lines[-1]:
            logger.info("%s: ignoring an unterminated last line (%d bytes) of an interrupted"
                        " write", self.path, len(lines[-1]))
        records = []
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "key" not in record:
                logger.warning("%s:%d: not a result record, ignored", self.path, number)
                continue
            records.append(record)
        return records

    def latest(self) -> dict[str, dict]:
        """Key -> the last record written for it."""
        return {record["key"]: record for record in self.records()}

    def finished(self, *, retry_failed: bool = False) -> set[str]:
        """Keys of the cells a resumed sweep skips (``retry_failed``: only the ``ok`` ones)."""
        statuses = ("ok",) if retry_failed else FINISHED
        return {key for key, r in self.latest().items() if r.get("status") in statuses}

    def append(self, record: Mapping) -> None:
        """Add one record (a JSON object with a ``key``) as one line."""
        if "key" not in record:
            raise ValueError("a result record needs a 'key'")
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked() as fd:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    os.write(fd, b"\n")  # end a torn line left by a killed writer
                written = os.write(fd, line)
                if written != len(line):  # a full disk: never leave half a line
                    os.ftruncate(fd, size)
                    raise OSError(28, "short write: the disk may be full")
                os.fsync(fd)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot append to the result store"
                              f" ({os_error_text(exc)})") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock
