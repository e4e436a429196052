"""The typer application, the shared ``--debug`` option and the error boundary."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from graphopt.errors import GraphoptError

__all__ = ["app", "main", "console", "err_console", "DebugOption", "set_debug", "EXIT_USAGE"]

EXIT_USAGE = 2

app = typer.Typer(
    name="graphopt",
    help="Optimize ONNX graphs (fusion, quantization, pruning, low rank), verify every rewrite,"
    " and measure the result on ONNX Runtime, OpenVINO and TensorRT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show full tracebacks and debug logging.")
]


def set_debug(debug: bool) -> None:
    """Turn on tracebacks and debug logging (from the global or a command's ``--debug``)."""
    if debug:
        _state["debug"] = True
        logging.getLogger("graphopt").setLevel(logging.DEBUG)


@app.callback()
def _root(debug: DebugOption = False) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    set_debug(debug)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: unwinds the stack (temporary files are removed on the way)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Turn the first SIGTERM/SIGINT into :class:`Interrupted`; a second one while cleaning up
    ends the process at once. The previous handlers come back afterwards."""
    fired = []

    def handler(signum, frame):
        if fired:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2.

    Usage errors (unknown option, missing argument) are typer's own: usage text, exit code 2.
    SIGTERM and SIGINT remove temporary files and exit with 128 + the signal number.
    """
    _state["debug"] = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        with _signals_unwind():
            app(args=argv)
    except Interrupted as exc:
        err_console.print(f"interrupted ({exc})")
        sys.exit(128 + exc.signum)
    except GraphoptError as exc:
        if _state["debug"]:
            raise
        message = escape(_one_line(exc))
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # a bug: say so in one line unless --debug
        if _state["debug"]:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(_one_line(exc))}"
            " (run with --debug for the traceback)", highlight=False, soft_wrap=True,
        )
        sys.exit(1)
