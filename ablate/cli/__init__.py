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
    epilog="Docs: docs/index.md (make docs builds them into site/)",
    no_args_is_help=True,
    rich_markup_mode=None,  # click's layout: option help 46 columns wide at 80, not 20
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(db_cli.app, name="db")
app.add_typer(export_cli.app, name="export")
# Each command's --help ends with the page of docs/ that explains it.
app.command("models", epilog="Docs: docs/writing-a-study.md")(models)
app.command("tricks", epilog="Docs: docs/writing-a-study.md")(tricks)
app.command("run", epilog="Docs: docs/writing-a-study.md")(run)
app.command("status", epilog="Docs: docs/writing-a-study.md")(status)
app.command("show", epilog="Docs: docs/one-run.md")(show)
app.command("report", epilog="Docs: docs/reading-a-report.md")(report)


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
