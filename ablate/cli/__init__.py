"""The ``ablate`` command line: thin commands over the zoo and the orchestrator."""

from __future__ import annotations

from typing import Annotated

import typer

from ablate import __version__
from ablate.cli import data as data_cli
from ablate.cli import db as db_cli
from ablate.cli import export as export_cli
from ablate.cli.models import models
from ablate.cli.report import report
from ablate.cli.run import run, show, status
from ablate.cli.tricks import tricks

app = typer.Typer(
    help="Which training tricks really improve an image classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(db_cli.app, name="db")
app.add_typer(export_cli.app, name="export")
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
