"""The ``graphopt`` command line: thin typer commands over the Python API.

Errors caused by the input (``GraphoptError``) print one line on stderr and exit with code 2;
``--debug`` (global or per command) shows the traceback instead.
"""

from __future__ import annotations

import importlib

from graphopt.cli.app import app, main

__all__ = ["app", "main"]

# Each command lives in its own module and registers itself on ``app`` when imported.
_COMMAND_MODULES = ("optimize", "inspect_cmd", "passes_cmd", "bench_cmd", "backends_cmd",
                    "debug_cmd", "report_cmd", "tune_cmd")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
