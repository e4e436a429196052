"""A model with more than 2 GB of external weights goes through `optimize --preset lossless`.

The run happens in a child process so that its peak RSS can be read (ru_maxrss of children)
and the bytes it writes (``wchar`` of /proc/self/io, dumped at exit): verification maps the
weights in place, so the only copy written is the output's data file.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys

import pytest

from graphopt.zoo import write_large_model

WEIGHT_BYTES = int(2.1 * 2**30)


@pytest.fixture
def big_files(tmp_path):
    """``tmp_path`` whose model folders (> 4 GB between input and output) are removed when
    the test ends, passed or failed: pytest keeps the last runs' temp folders."""
    yield tmp_path
    for folder in ("in", "out"):
        shutil.rmtree(tmp_path / folder, ignore_errors=True)


@pytest.mark.slow
def test_over_2gb_external_data_round_trip(big_files):
    tmp_path = big_files
    source = write_large_model(tmp_path / "in" / "big.onnx", WEIGHT_BYTES)
    weights = (source.parent / "big.onnx.data").stat().st_size
    assert weights > 2 * 2**30
    out, report = tmp_path / "out" / "big.opt.onnx", tmp_path / "report.json"
    out.parent.mkdir()  # outputs go to existing folders only
    io_file = tmp_path / "io.txt"
    child = ("import atexit, shutil\n"
             f"atexit.register(shutil.copyfile, '/proc/self/io', {str(io_file)!r})\n"
             "from graphopt.cli import main; main()")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-c", child, "optimize", str(source),
         "-o", str(out), "--preset", "lossless", "--report", str(report)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak > before * 1024 or before == 0
    written = int(dict(line.split(": ") for line in io_file.read_text().splitlines())["wchar"])
    print(f"peak RSS {peak / 2**30:.2f} GiB, wrote {written / 2**30:.2f} GiB for"
          f" {weights / 2**30:.2f} GiB of weights")
    assert peak < 1.3 * weights
    assert written < 1.1 * weights  # the output's data; no temporary copy
    data = json.loads(report.read_text())
    assert data["fidelity"]["max_rel"] == 0
    assert data["output"]["nodes"] < data["input"]["nodes"]  # Identity and Dropout removed
    assert (out.parent / "big.opt.onnx.data").stat().st_size == weights
