"""Nothing of the user's is destroyed: what graphopt writes never replaces what it reads, only
regular files are written, and a kill at any instant leaves the old or the new output whole.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphopt import oracle
from graphopt.model_io import load_model, save_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _matmul_model(folder: Path, *, name: str = "m.onnx", scale: float = 1.0,
                  data_name: str | None = None, size: int = 64) -> Path:
    """y = x @ w with w (size x size) stored in external data ``data_name`` (default
    ``NAME.data``)."""
    folder.mkdir(parents=True, exist_ok=True)
    weight = np.full((size, size), scale, np.float32)
    tensor = numpy_helper.from_array(weight, "w")
    data_name = data_name or f"{name}.data"
    (folder / data_name).write_bytes(weight.tobytes())
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", data_name), ("offset", "0"),
                       ("length", str(weight.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _output_of(path: Path) -> float:
    """The model's output for x = ones: size * scale on every element."""
    model = load_model(path)
    size = model.graph.inputs[0].shape[1]
    (y,) = oracle.run_model(oracle.make_session(model),
                            {"x": np.ones((1, size), np.float32)}).values()
    assert np.all(y == y.flat[0])
    return float(y.flat[0])


def _one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err


# --------------------------------------------------------------------------- paths checked


@pytest.mark.parametrize("which", ["report=model", "report=output", "report=data",
                                   "output=inputs", "report=inputs", "output=calib"])
def test_written_paths_never_replace_read_paths(tmp_path, run_cli, which):
    model = _matmul_model(tmp_path / "in")
    data = tmp_path / "inputs.npz"
    np.savez(data, x=np.ones((2, 64), np.float32))
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    target = {"report=model": ("--report", model), "report=output": ("--report", out),
              "report=data": ("--report", model.with_name("m.onnx.data")),
              "output=inputs": ("-o", data), "report=inputs": ("--report", data),
              "output=calib": ("-o", data)}[which]
    args = {"-o": out, "--report": report}
    args[target[0]] = target[1]
    extra = ["--calib" if which == "output=calib" else "--inputs", str(data)]
    watched = [model, model.with_name("m.onnx.data"), data]
    before = {p: _digest(p) for p in watched}
    code, _, err = run_cli("optimize", str(model), "-o", str(args["-o"]),
                           "--report", str(args["--report"]), *extra)
    _one_line_error(code, err)
    assert {p: _digest(p) for p in watched} == before
    assert not out.exists() or which == "report=output"


def test_output_that_is_a_link_to_the_input_is_refused(tmp_path, run_cli):
    model = _matmul_model(tmp_path / "in")
    link = tmp_path / "o.onnx"
    link.symlink_to(model)
    before = _digest(model)
    code, _, err = run_cli("optimize", str(model), "-o", str(link))
    _one_line_error(code, err)
    assert _digest(model) == before


def test_symlink_at_the_output_data_path_is_replaced_not_followed(tmp_path, run_cli):
    model = _matmul_model(tmp_path / "in", scale=2.0)
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"the user's file")
    (out.parent / "o.onnx.data").symlink_to(victim)
    code, _, err = run_cli("optimize", str(model), "-o", str(out))
    assert code == 0, err
    assert victim.read_bytes() == b"the user's file"
    assert _output_of(out) == 128.0


def test_symlink_at_the_output_data_path_to_the_input_weights(tmp_path, run_cli):
    model = _matmul_model(tmp_path / "in", scale=2.0)
    weights = model.with_name("m.onnx.data")
    before = _digest(weights)
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    (out.parent / "o.onnx.data").symlink_to(weights)
    code, _, err = run_cli("optimize", str(model), "-o", str(out))
    assert code in (0, 2), err
    assert _digest(weights) == before
    assert _output_of(model) == 128.0
    if code == 0:
        assert _output_of(out) == 128.0


def test_fifo_output_is_refused(tmp_path, run_cli):
    fifo = tmp_path / "o.onnx"
    os.mkfifo(fifo)
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(fifo))
    _one_line_error(code, err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_fifo_report_is_refused_before_any_work(tmp_path, run_cli):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    out = tmp_path / "o.onnx"
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out), "--report", str(fifo))
    _one_line_error(code, err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not out.exists()


def test_device_output_is_refused(tmp_path, run_cli):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(device))
    _one_line_error(code, err)
    assert stat.S_ISCHR(os.lstat(device).st_mode)


@pytest.mark.parametrize("where", ["folder", "empty", "under a file", "unwritable"])
def test_unusable_output_paths_are_one_line(tmp_path, run_cli, where):
    (tmp_path / "file.txt").write_text("x")
    target = {"folder": str(tmp_path), "empty": "",
              "under a file": str(tmp_path / "file.txt" / "o.onnx"),
              "unwritable": "/proc/graphopt-test/o.onnx"}[where]
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", target)
    _one_line_error(code, err)


def test_disk_full_is_one_line_and_keeps_the_old_output(tmp_path, run_cli, monkeypatch):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"previous")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)
    monkeypatch.setattr(onnx, "save_model", full)
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out))
    _one_line_error(code, err)
    assert "No space left" in err
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]


def test_output_into_the_zoo_cache_is_refused(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path / "cache"))
    from graphopt import zoo

    cached = zoo.path("squeezenet")
    before = _digest(cached)
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(cached))
    _one_line_error(code, err)
    assert _digest(cached) == before


# --------------------------------------------------------------------------- replacing outputs


def _locations(path: Path) -> set[str]:
    """The external-data files the model at ``path`` refers to."""
    proto = onnx.load(path, load_external_data=False)
    return {entry.value for tensor in proto.graph.initializer
            for entry in tensor.external_data if entry.key == "location"}


def test_overwriting_an_output_removes_its_old_data_file(tmp_path):
    out = tmp_path / "o.onnx"
    first = load_model(_matmul_model(tmp_path / "a", scale=1.0))
    save_model(first, out)
    assert _output_of(out) == 64.0
    for scale in (2.0, 3.0, 4.0):
        save_model(load_model(_matmul_model(tmp_path / f"s{scale}", scale=scale)), out)
        assert _output_of(out) == 64.0 * scale
        files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
        referenced = _locations(out)
        assert len(referenced) == 1
        assert files == sorted(["o.onnx", *referenced])


class _Crash(BaseException):
    """Stands for SIGKILL: raised at one filesystem mutation, and at every one after it."""


_MUTATIONS = ("replace", "rename", "unlink", "remove", "rmdir", "link", "symlink")


def _crash_at(monkeypatch, step: int | None) -> list[str]:
    """Make the ``step``-th filesystem mutation (and all later ones) crash; return the log."""
    log: list[str] = []
    for name in _MUTATIONS:
        real = getattr(os, name)

        def patched(*args, _real=real, _name=name, **kwargs):
            if step is not None and len(log) >= step:
                raise _Crash(_name)
            log.append(f"{_name} {args[0] if args else ''}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, patched)
    return log


def test_a_kill_between_any_two_filesystem_steps_leaves_old_or_new(tmp_path, monkeypatch):
    from graphopt import atomic

    monkeypatch.setattr(atomic, "_pid_alive", lambda pid: False)  # as after a real kill
    old_model = load_model(_matmul_model(tmp_path / "old", scale=1.0))
    new_model = load_model(_matmul_model(tmp_path / "new", scale=2.0))
    with monkeypatch.context() as patch:
        log = _crash_at(patch, None)
        save_model(old_model, tmp_path / "probe" / "o.onnx")
        log.clear()
        save_model(new_model, tmp_path / "probe" / "o.onnx")
        steps = len(log)
    assert steps >= 2
    for step in range(steps + 1):
        folder = tmp_path / f"k{step}"
        out = folder / "o.onnx"
        save_model(old_model, out)
        with monkeypatch.context() as patch:
            _crash_at(patch, step)
            try:
                save_model(new_model, out)
            except _Crash:
                pass
        assert _output_of(out) in (64.0, 128.0), f"after step {step}"
        save_model(new_model, out)  # the next run cleans what the kill left
        assert _output_of(out) == 128.0
        names = sorted(p.name for p in folder.iterdir())
        assert len(names) == 2 and "o.onnx" in names, (step, names)


_CHILD = "from graphopt.cli import main; main()"


def test_sigkill_at_random_instants_leaves_old_or_new(tmp_path):
    out = tmp_path / "out" / "o.onnx"
    old = _matmul_model(tmp_path / "old", scale=1.0, size=1024)
    new = _matmul_model(tmp_path / "new", scale=2.0, size=2048)
    save_model(load_model(old), out)
    rng = np.random.default_rng(0)
    for delay in rng.uniform(1.0, 3.0, 4):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, "optimize", str(new), "-o",
                                 str(out), "--no-verify"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _output_of(out) in (1024.0, 4096.0)  # old or new, never a mix


_PAUSED_CHILD = """
import sys, time
import graphopt.atomic, graphopt.verify
from graphopt.cli import main

def pause(real):
    def paused(*args, **kwargs):
        result = real(*args, **kwargs)
        print("READY", flush=True)
        time.sleep(60)
        return result
    return paused

where = sys.argv.pop(1)
if where == "verify":
    graphopt.verify.Verifier.check_pass = pause(graphopt.verify.Verifier.check_pass)
else:
    graphopt.atomic.no_clobber_move = pause(graphopt.atomic.no_clobber_move)
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("where", ["verify", "save"])
def test_a_signal_leaves_no_temporary_files(tmp_path, signum, where):
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()  # graphopt does not create a missing output folder
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    model = _matmul_model(tmp_path / "in", scale=1.0, size=512)
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_CHILD, where, "optimize", str(model),
                             "-o", str(out)], env=dict(os.environ, TMPDIR=str(scratch)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    ours = lambda folder: [p.name for p in folder.iterdir() if "graphopt" in p.name]  # noqa: E731
    assert ours(scratch) or ours(out.parent)  # something to clean up
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.strip().splitlines() == [f"interrupted ({signal.Signals(signum).name})"]
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert ours(scratch) == []


def test_stale_temporary_files_of_ours_are_removed(tmp_path, run_cli):
    out = tmp_path / "o.onnx"
    dead = 2**22 + 12345  # above the default pid_max: never a live process
    stale = [tmp_path / f".o.onnx.graphopt-{dead}-abcd1234.tmp",
             tmp_path / f".o.onnx.graphopt-{dead}-abcd1235.tmpdir"]
    stale[0].write_bytes(b"x" * 100)
    stale[1].mkdir()
    (stale[1] / "o.onnx.data").write_bytes(b"x" * 100)
    alive = tmp_path / f".o.onnx.graphopt-{os.getpid()}-abcd1236.tmp"
    alive.write_bytes(b"in use")
    other = tmp_path / ".unrelated.tmp"
    other.write_bytes(b"not ours")
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out))
    assert code == 0, err
    assert not any(p.exists() for p in stale)
    assert alive.exists() and other.exists()


def test_report_and_outputs_get_ordinary_file_modes(tmp_path, run_cli):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out), "--report", str(report))
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    for path in (out, report):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert json.loads(report.read_text())["output_path"] == str(out)
