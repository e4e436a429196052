"""Fuzzing the CLI: a few hundred seeded mutants through ``optimize`` and ``inspect``.

Every run must end with exit 0 (and, for optimize, an output that onnxruntime computes the same
as the mutant) or exit 2 with one line on stderr; never a traceback, exit 1 or extra lines.
``GRAPHOPT_FUZZ_TABLE=FILE`` writes the classes x outcomes table to FILE.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

from fuzzing import BAD_OUTCOMES, classify, mutants, same_outputs, table

PER_CLASS = 100  # 300 mutants, each through optimize and inspect


def print_warning(message, category, filename, lineno, file=None, line=None):
    """Python's own way of showing a warning (pytest records them instead)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_in_a_fresh_process(monkeypatch):
    """Library log records and Python warnings reach stderr as they would outside pytest
    (which otherwise captures both), so that extra lines on stderr are seen."""
    monkeypatch.setattr(logging.root, "handlers", [])
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.showwarning = print_warning
        yield


def test_mutants_end_in_exit_0_equal_or_one_line_exit_2(tmp_path, run_cli_fd, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with _as_in_a_fresh_process(monkeypatch):
        _check_mutants(tmp_path, run_cli_fd)


def _check_mutants(tmp_path, run):
    rows, bad = [], []
    for index, mutant in enumerate(mutants(seed=13, per_class=PER_CLASS)):
        folder = tmp_path / f"m{index}"
        path = mutant.write(folder)
        out = folder / "out.onnx"
        code, stdout, err = run("optimize", str(path), "-o", str(out))
        outcome = classify(code, stdout, err,
                           equal=lambda path=path, out=out: same_outputs(path, out))
        rows.append((f"{mutant.cls} optimize", outcome))
        label = f"{mutant.cls}/{mutant.kind}/{mutant.base}"
        if outcome in BAD_OUTCOMES:
            bad.append(f"{label} optimize: {outcome}: {err[-300:]}")
        code, stdout, err = run("inspect", str(path), "--json")
        outcome = classify(code, stdout, err)
        rows.append((f"{mutant.cls} inspect", outcome))
        if outcome in BAD_OUTCOMES:
            bad.append(f"{label} inspect: {outcome}: {err[-300:]}")
    text = table(rows)
    if os.environ.get("GRAPHOPT_FUZZ_TABLE"):
        Path(os.environ["GRAPHOPT_FUZZ_TABLE"]).write_text(text + "\n\n" + "\n".join(bad) + "\n")
    assert not bad, f"{len(bad)} bad outcomes\n{text}\n" + "\n".join(bad[:20])
