"""Atomic writes: every file graphopt writes goes through here.

A write goes to a temporary sibling of the target (same folder, so the rename cannot cross a
filesystem) and is renamed over the target when complete: a reader or a kill at any instant
sees the complete old file or the complete new one. The rename replaces whatever entry is at
the target, so a symlink there is replaced, never followed; folders, FIFOs, devices and sockets
are refused (graphopt writes only regular files).

Temporary names carry the writer's process id, ``.NAME.graphopt-PID-TOKEN.tmp`` (a file) or
``.tmpdir`` (a staging folder), so a later run recognises what a killed run left behind and
removes it (:func:`remove_stale`); files of live processes and anything else are left alone.
``scratch_dir`` makes recognisable scratch folders under the system temp folder the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from graphopt.errors import OutputError

__all__ = [
    "TEMP_MARK",
    "check_writable_target",
    "atomic_path",
    "staging_dir",
    "write_bytes",
    "write_text",
    "write_json",
    "remove_stale",
    "scratch_dir",
    "file_mode",
    "os_error_text",
    "no_clobber_move",
]

TEMP_MARK = "graphopt"
_NAME_LIMIT = 100  # of the target's name kept in temporary names (file names max out at 255)
_TEMP = re.compile(rf"^\.(?P<name>.*)\.{TEMP_MARK}-(?P<pid>\d+)-[0-9a-f]+\.(tmp|tmpdir)$")
_SCRATCH = re.compile(rf"^{TEMP_MARK}-(?P<pid>\d+)-[0-9a-f]+$")


def os_error_text(exc: OSError) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: '...'``."""
    return exc.strerror or str(exc) or type(exc).__name__


def file_mode() -> int:
    """The mode a plainly created file gets here (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_writable_target(target: Path, what: str = "output") -> None:
    """Refuse a target that is not a regular file (or a symlink, which is replaced)."""
    if not os.fspath(target) or os.fspath(target) in (".", ".."):
        raise OutputError(f"{what} path {os.fspath(target)!r}: empty, expected a file name")
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"{what} {target}: {os_error_text(exc)}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"{what} {target}: is a folder, expected a file name")
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(f"{what} {target}: is not a regular file (a FIFO, device or socket);"
                          " graphopt writes only regular files")
    folder = _existing_ancestor(target.parent)
    if not folder.is_dir():
        raise OutputError(f"{what} {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {target}: cannot write in {folder} (permission denied)")


def _existing_ancestor(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _temp_name(target: Path, suffix: str) -> str:
    return f".{target.name[:_NAME_LIMIT]}.{TEMP_MARK}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}"


def _prepare(target: Path, what: str, suffix: str) -> Path:
    """Check ``target``, make its folder, clear what killed runs left: the temporary name."""
    check_writable_target(target, what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{what} {target}: {os_error_text(exc)}") from exc
    remove_stale(target)
    return target.parent / _temp_name(target, suffix)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, what: str = "output") -> Iterator[Path]:
    """A temporary path beside ``target``; renamed over it when the block succeeds, removed
    when it fails. OS errors become one-line :class:`OutputError`."""
    target = Path(target)
    tmp = _prepare(target, what, "tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            yield tmp
            os.chmod(tmp, file_mode())
            check_writable_target(target, what)  # still not a folder or FIFO
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"cannot write {what} {target}: {os_error_text(exc)}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def staging_dir(target: str | os.PathLike, *, what: str = "output") -> Iterator[Path]:
    """A private folder beside ``target`` for writing several files that are then moved into
    place by the caller; removed, with whatever is left in it, when the block ends."""
    target = Path(target)
    stage = _prepare(target, what, "tmpdir")
    try:
        try:
            os.mkdir(stage, 0o700)
            yield stage
        except OSError as exc:
            raise OutputError(f"cannot write {what} {target}: {os_error_text(exc)}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_bytes(target: str | os.PathLike, data: bytes, *, what: str = "output") -> Path:
    """Write ``data`` to ``target`` atomically."""
    return _write(target, lambda handle: handle.write(data), "wb", what)


def write_text(target: str | os.PathLike, text: str, *, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    return _write(target, lambda handle: handle.write(text), "w", what)


def write_json(target: str | os.PathLike, data: object, *, what: str = "output") -> Path:
    """Write ``data`` as indented JSON (and a final newline) to ``target`` atomically."""
    def dump(handle) -> None:
        json.dump(data, handle, indent=2)
        handle.write("\n")

    return _write(target, dump, "w", what)


def _write(target, write: Callable, mode: str, what: str) -> Path:
    target = Path(target)
    with atomic_path(target, what=what) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    return target


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OverflowError:
        return False
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files and folders that killed graphopt runs left beside ``target``
    (ours by name, their process gone). Returns what was removed."""
    target = Path(target)
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or match["name"] != target.name[:_NAME_LIMIT]:
            continue
        if _pid_alive(int(match["pid"])):
            continue
        _remove(Path(entry.path))
        removed.append(Path(entry.path))
    return removed


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A scratch folder under the system temp folder, removed at the end (and, if a kill
    prevented that, by a later run)."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            match = _SCRATCH.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _pid_alive(
                    int(match["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)
    path = root / f"{TEMP_MARK}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        raise OutputError(f"cannot create a scratch folder in {root}: {os_error_text(exc)}"
                          ) from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def no_clobber_move(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, which must not exist (fails rather than replace)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from exc
        os.rename(source, target)  # filesystems without hard links
        return
    os.unlink(source)
