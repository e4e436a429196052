"""A model with more than 2 GB of external weights goes through `optimize --preset lossless`.

The run happens in a child process so that its peak RSS can be read (ru_maxrss of children).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from graphopt.zoo import write_large_model

WEIGHT_BYTES = int(2.1 * 2**30)


@pytest.mark.slow
def test_over_2gb_external_data_round_trip(tmp_path):
    source = write_large_model(tmp_path / "in" / "big.onnx", WEIGHT_BYTES)
    weights = (source.parent / "big.onnx.data").stat().st_size
    assert weights > 2 * 2**30
    out, report = tmp_path / "out" / "big.opt.onnx", tmp_path / "report.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-c", "from graphopt.cli import main; main()", "optimize", str(source),
         "-o", str(out), "--preset", "lossless", "--report", str(report)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak > before * 1024 or before == 0
    print(f"peak RSS {peak / 2**30:.2f} GiB for {weights / 2**30:.2f} GiB of weights")
    assert peak < 1.6 * weights
    data = json.loads(report.read_text())
    assert data["fidelity"]["max_rel"] == 0
    assert data["output"]["nodes"] < data["input"]["nodes"]  # Identity and Dropout removed
    assert (out.parent / "big.opt.onnx.data").stat().st_size == weights
