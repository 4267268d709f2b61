"""The ``ablate`` command line: thin commands over the zoo and the orchestrator."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Annotated, Any, NoReturn

import typer

from ablate import __version__, data_cli
from ablate.models_cli import models
from ablate.report_cli import report
from ablate.run_cli import run, show, status
from ablate.tricks_cli import tricks


class _Cli(typer.Typer):
    """The program's Typer app: a command that imported torch (run: to validate its configs;
    models, tricks) ends without finalising the interpreter, which takes 0.9 s with torch,
    torchvision and timm loaded. Only the program's entry point goes through here; tests'
    ``CliRunner`` invokes the commands themselves."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as exc:
            # Only when nothing else runs: a thread would be cut off, not joined.
            if "torch" in sys.modules and threading.active_count() == 1:
                _exit_now(exc.code)
            raise


def _exit_now(code: Any) -> NoReturn:
    """Exit as the interpreter would (exit handlers, flushed output), minus finalisation."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away (| head)
            stream.flush()
    os._exit(code or 0)


app = _Cli(
    help="Which training tricks really improve an image classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.command("models")(models)
app.command("tricks")(tricks)
app.command("run")(run)
app.command("status")(status)
app.command("show")(show)
app.command("report")(report)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ablate {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """ablate: run ablation studies of training tricks and report what really helps."""
