"""The typer application, the shared ``--debug`` option and the error boundary.

What a person sees on stderr: graphopt's own warnings and, for a user error, one line. Log
records of libraries (onnx-ir, onnxruntime's own log, Python warnings such as numpy's
RuntimeWarnings) appear only with ``--verbose`` (graphopt at INFO) or ``--debug`` (DEBUG and
tracebacks).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from graphopt import notices
from graphopt.errors import GraphoptError

__all__ = ["app", "main", "console", "err_console", "DebugOption", "set_debug", "EXIT_USAGE",
           "Interrupted", "one_line", "verbose_requested"]

EXIT_USAGE = 2
# the program name in usage lines and in the completion script (its _GRAPHOPT_COMPLETE variable),
# also under `python -m graphopt` and in tests
PROG_NAME = "graphopt"
COMPLETION_OPTIONS = ("--install-completion", "--show-completion")

def _plain_placeholders() -> None:
    """Help without typer's odd placeholders: no ``<bool>`` beside a flag (it takes no value),
    no type beside an argument (its name is the placeholder) and ``MODEL...`` in the usage line
    instead of ``{MODEL}...`` (click's convention: a required argument bare and in capitals,
    an optional one in brackets)."""
    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich
    if getattr(option_type, "_graphopt", False):
        return

    def option_display_type(self, ctx):
        if self.is_flag or self.count:
            return None
        return option_type(self, ctx)

    def argument_display_type(self, ctx):
        return None

    def argument_name(self):
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def argument_usage(self):
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1 and not name.rstrip("]").endswith("..."):
            name += "..."
        return name

    option_display_type._graphopt = True
    TyperOption.display_type_rich = option_display_type
    TyperArgument.display_type_rich = argument_display_type
    TyperArgument.display_name_raw = property(argument_name)
    if hasattr(TyperArgument, "_usage_display_name"):
        TyperArgument._usage_display_name = argument_usage


_plain_placeholders()

app = typer.Typer(
    name="graphopt",
    help="Optimize ONNX graphs (fusion, quantization, pruning, low rank), verify every rewrite,"
    " and measure the result on ONNX Runtime, OpenVINO and TensorRT.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False, "verbose": False}
_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show full tracebacks and debug logging.")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", help="Show graphopt's progress log and library warnings.")
]


def verbose_requested() -> bool:
    """Whether this run asked for more detail (``--verbose`` or ``--debug``)."""
    return _state["verbose"] or _state["debug"]


def set_debug(debug: bool) -> None:
    """Turn on tracebacks and debug logging (from the global or a command's ``--debug``)."""
    if debug:
        _state["debug"] = True
        logging.getLogger("graphopt").setLevel(logging.DEBUG)


def _print_version(value: bool) -> None:
    if value:
        from graphopt import __version__

        typer.echo(f"graphopt {__version__}")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option(
    "--version", help="Print graphopt's version and exit.", is_eager=True,
    callback=_print_version)]


@app.callback()
def _root(debug: DebugOption = False, verbose: VerboseOption = False,
          version: VersionOption = False) -> None:
    if verbose and not _state["debug"]:
        _state["verbose"] = True
        logging.getLogger("graphopt").setLevel(logging.INFO)
    set_debug(debug)


class _LibraryRecords(logging.Filter):
    """graphopt's records pass (their loggers' levels decide); other libraries' only with
    --verbose or --debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "graphopt" or record.name.startswith("graphopt."):
            return True
        return _state["debug"] or _state["verbose"]


@contextlib.contextmanager
def _logging(argv: list[str]) -> Iterator[None]:
    """One stderr handler for this run; levels and warning filters restored afterwards."""
    _state["debug"] = "--debug" in argv
    _state["verbose"] = "--verbose" in argv and not _state["debug"]
    graphopt_logger = logging.getLogger("graphopt")
    level = graphopt_logger.level
    graphopt_logger.setLevel(logging.DEBUG if _state["debug"] else
                             logging.INFO if _state["verbose"] else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.addFilter(_LibraryRecords())
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings():
            if not (_state["debug"] or _state["verbose"]):
                warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().removeHandler(handler)
        graphopt_logger.setLevel(level)


def one_line(exc: BaseException) -> str:
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


def main_index(args: list[str], commands: dict[str, str]) -> None:
    """``graphopt``, ``graphopt --help``, ``graphopt --version``: answered by an app with the
    same root options and one stub per command (its one-line help), nothing else imported."""
    index = typer.Typer(name=app.info.name, help=app.info.help, no_args_is_help=True,
                        add_completion=True, pretty_exceptions_enable=False,
                        rich_markup_mode="rich")
    index.callback()(_root)
    for name, text in commands.items():
        index.command(name, help=text, add_help_option=False)(lambda: None)
    index(args=args, prog_name=PROG_NAME)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2.

    Usage errors (unknown option, missing argument) are typer's own: usage text, exit code 2.
    SIGTERM and SIGINT remove temporary files and exit with 128 + the signal number.
    """
    args = list(argv if argv is not None else sys.argv[1:])
    stop_listening = notices.listen(
        lambda text: err_console.print(text, highlight=False, markup=False))
    try:
        with _logging(args), _signals_unwind():
            app(args=argv, prog_name=PROG_NAME)
    except Interrupted as exc:
        err_console.print(f"interrupted ({exc})")
        sys.exit(128 + exc.signum)
    except GraphoptError as exc:
        if _state["debug"]:
            raise
        message = escape(one_line(exc))
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # a bug: say so in one line unless --debug
        if _state["debug"]:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(one_line(exc))}"
            " (run with --debug for the traceback)", highlight=False, soft_wrap=True,
        )
        sys.exit(1)
    finally:
        stop_listening()
