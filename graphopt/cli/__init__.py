"""The ``graphopt`` command line: thin typer commands over the Python API.

Errors caused by the input (``GraphoptError``) print one line on stderr and exit with code 2;
``--debug`` (global or per command) shows the traceback instead.

``graphopt --help``, ``graphopt --version`` and ``graphopt --show-completion`` /
``--install-completion`` answer from the table below without importing a command module (so
neither onnx, onnxruntime nor onnx-ir is loaded); any command, and a shell asking for
completions, imports the command modules, which register themselves on ``app``.
"""

from __future__ import annotations

import importlib
import os
import sys

from graphopt.cli import app as _app_module
from graphopt.cli.app import app

__all__ = ["app", "main", "COMMANDS", "load_commands"]

# name -> (module, the one line `graphopt --help` shows for it)
COMMANDS = {
    "optimize": ("optimize", "Rewrite models with a pipeline (the lossless preset by"
                             " default), verify and save them."),
    "inspect": ("inspect_cmd", "Show a model's opset, I/O, operators, params, MACs and size;"
                               " several side by side."),
    "passes": ("passes_cmd", "List the registered passes with their options, and the"
                             " presets."),
    "zoo": ("passes_cmd", "List the built-in models usable as zoo:NAME, the cache folder and"
                          " its size."),
    "bench": ("bench_cmd", "Measure models on backends: latency with CIs, throughput, energy,"
                           " fidelity, paired speedup."),
    "backends": ("backends_cmd", "List the backends usable with `graphopt bench --backend`,"
                                 " available or not and why."),
    "debug": ("debug_cmd", "Find where a candidate model parts ways with its reference,"
                           " tensor by tensor."),
    "report": ("report_cmd", "Write an HTML page and a Markdown summary of a result store."),
    "tune": ("tune_cmd", "Search pipelines and backend precisions for the fastest model"
                         " within --budget."),
}


def load_commands() -> None:
    """Import every command module (each registers its commands on ``app``)."""
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        importlib.import_module(f"{__name__}.{module}")


def _root_only(args: list[str]) -> bool:
    """Whether ``args`` are root options alone (``--help``, ``--version``, ``--show-completion
    [SHELL]``, ``--install-completion [SHELL]``), answered without loading the commands.

    A shell asking for completions (``_GRAPHOPT_COMPLETE`` set) needs every command's options:
    not root-only."""
    if os.environ.get(f"_{_app_module.PROG_NAME.upper()}_COMPLETE"):
        return False
    for index, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        if index and args[index - 1] in _app_module.COMPLETION_OPTIONS:
            continue  # the SHELL of --show-completion bash
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """Console entry point (see :func:`graphopt.cli.app.main`); the root help, version and
    completion script come from :data:`COMMANDS` without loading the commands."""
    args = list(argv if argv is not None else sys.argv[1:])
    if _root_only(args):
        _app_module.main_index(args, {name: text for name, (_, text) in COMMANDS.items()})
        return
    load_commands()
    _app_module.main(argv)
