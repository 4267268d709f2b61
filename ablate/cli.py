"""The ``ablate`` command line: thin commands over the zoo and the orchestrator."""

from __future__ import annotations

from typing import Annotated

import typer

from ablate import __version__, data_cli
from ablate.models_cli import models
from ablate.report_cli import report
from ablate.run_cli import run, show, status
from ablate.tricks_cli import tricks

app = typer.Typer(
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
