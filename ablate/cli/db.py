"""``ablate db ...``: the results database as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ablate.cli.console import fail
from ablate.cli.options import DbOption
from ablate.errors import USER_ERRORS

app = typer.Typer(help="The results database: rebuild it from run directories.",
                  epilog="Docs: docs/design.md", no_args_is_help=True, rich_markup_mode=None)


@app.command("rebuild", epilog="Docs: docs/design.md")
def rebuild(
    runs_dir: Annotated[Path, typer.Option(help="the run directories to read")] = Path("runs"),
    db: DbOption = None,
) -> None:
    """Make a new results database from run directories alone.

    The run directories are the source of truth: the new database gets their studies,
    runs, metrics and results, not timestamps or owners."""
    from ablate.store.rebuild import rebuild as rebuild_db
    from ablate.store.schema import default_url

    url = db or default_url()
    try:
        studies, runs = rebuild_db(runs_dir, url)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo(f"{url}: rebuilt {studies} studies, {runs} runs from {runs_dir}")
